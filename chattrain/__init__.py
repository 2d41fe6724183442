"""chattrain for existing code: ``model.fit(..., callbacks=[chattrain.keras.Remote()])``.

Importing this package imports nothing heavy; ``chattrain.keras`` imports Keras.
"""
