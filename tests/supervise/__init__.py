"""Tests of supervise, the Procfile restart supervisor."""
