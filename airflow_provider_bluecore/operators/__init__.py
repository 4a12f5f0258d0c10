"""Operators of the Bluecore provider."""
