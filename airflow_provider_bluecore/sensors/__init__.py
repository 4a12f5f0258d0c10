"""Sensors of the Bluecore provider."""
