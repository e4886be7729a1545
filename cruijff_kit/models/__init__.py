"""Locally built models (no hub access needed). Keep this module free of heavy imports."""
