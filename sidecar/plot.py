"""Draw the loss and accuracy curves to a PNG in the sidecar's own state directory.

Uses matplotlib's object API with the Agg canvas directly (no pyplot): no global figure
state, safe off the main thread, and no GUI backend can be picked up. matplotlib is imported
here only, when a plot is asked for, so the sidecar starts fast and small.
The output path is fixed by the caller from its state dir; chat text never names a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from sidecar.series import SeriesSnapshot

PLOT_FILENAME = "plot.png"
FIGURE_SIZE_IN = (8.0, 6.0)
DPI = 100


def plot_png(series: SeriesSnapshot, state_dir: Path, title: str = "") -> Path:
    """Write the curves to `state_dir/plot.png` (atomically) and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(2, 1, sharex=True)
    _draw(loss_axes, [("loss", series.loss)], "loss")
    _draw(
        accuracy_axes,
        [("train", series.accuracy), ("validation", series.val_accuracy), ("test", series.test_accuracy)],
        "accuracy",
    )
    accuracy_axes.set_xlabel("step")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / PLOT_FILENAME
    partial = state_dir / (PLOT_FILENAME + ".part")
    figure.savefig(partial, format="png")
    os.replace(partial, path)
    return path


def _draw(axes, curves, label: str) -> None:  # type: ignore[no-untyped-def]
    for name, points in curves:
        if points:
            steps, values = zip(*points, strict=True)
            style = "-" if len(points) > 1 else "o"
            axes.plot(steps, values, style, label=name)
    axes.set_ylabel(label)
    axes.grid(True, alpha=0.3)
    if any(points for _, points in curves):
        axes.legend(loc="best")
