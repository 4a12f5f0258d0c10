"""Hooks of the Bluecore provider."""
