"""Transfers of the Bluecore provider."""
