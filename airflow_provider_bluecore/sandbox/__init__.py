"""Sandbox of the Bluecore provider."""
