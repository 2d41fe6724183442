"""Tests of trainctl (the CLI client) and trainctl.respawn (the Procfile restart supervisor)."""
