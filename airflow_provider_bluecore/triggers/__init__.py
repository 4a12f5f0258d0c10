"""Triggers of the Bluecore provider."""
