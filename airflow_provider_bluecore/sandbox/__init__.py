"""A local stand-in for Bluecore's Events API: develop and verify a sync before it touches real customers.

Bluecore has no QA environment, so the provider ships one. The sandbox answers ``POST /api/track/mobile/v1`` with 202 for an
event the provider's rules accept and 400 with every reason otherwise, keeps accepted events in SQLite, can inject latency,
500s, 429s and dropped connections, and serves a page at ``/`` to look at the result. Run it with ``bluecore sandbox`` or
in-process with :class:`SandboxServer`. A plain package: nothing here imports Airflow.
"""

from __future__ import annotations

from airflow_provider_bluecore.sandbox.rules import check_event
from airflow_provider_bluecore.sandbox.server import TRACK_PATH, Faults, SandboxServer
from airflow_provider_bluecore.sandbox.store import EventStore

__all__ = ["TRACK_PATH", "EventStore", "Faults", "SandboxServer", "check_event"]
