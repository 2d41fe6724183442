"""Tests of trainctl, the command-line client."""
