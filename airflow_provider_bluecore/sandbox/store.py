"""Where the sandbox keeps what it accepted: one SQLite file, written by a single thread that batches commits.

HTTP handler threads never write to SQLite themselves. They put rows on a queue and answer at once; one writer thread takes
whatever has queued up (up to ``batch_size`` rows) and commits it in one transaction. With many concurrent senders that
means one commit per batch instead of one per event, which is what lets a small machine keep up with the provider's
concurrent delivery. Readers call :meth:`EventStore.sync` first, which waits until every row queued before the call is
committed, so a page or a test always sees the events that were already answered 202.

Schema (``PRAGMA user_version`` 1)::

    events(id INTEGER PRIMARY KEY, received_at REAL, event TEXT, distinct_id TEXT, email TEXT NULL, body TEXT)
    links(distinct_id TEXT, email TEXT, PRIMARY KEY (distinct_id, email))      -- from events carrying a customer e-mail
    rejections(id INTEGER PRIMARY KEY, received_at REAL, event TEXT NULL, reasons TEXT)  -- reasons: a JSON list

``received_at`` is the sandbox's clock (Unix seconds): Bluecore events carry no timestamp and count as happening on arrival.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_bluecore.events import is_email

__all__ = ["AcceptedEvent", "EventStore", "Rejection", "StoreClosedError"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    event TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    email TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_customer ON events (distinct_id, id);
CREATE INDEX IF NOT EXISTS events_by_name_time ON events (event, received_at);
CREATE TABLE IF NOT EXISTS links (
    distinct_id TEXT NOT NULL,
    email TEXT NOT NULL,
    PRIMARY KEY (distinct_id, email)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_by_email ON links (email);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    event TEXT,
    reasons TEXT NOT NULL
);
"""
# Identity graphs are followed this far at most, so one pathological customer cannot make a page load crawl.
_MAX_IDENTIFIERS = 200
_TIMELINE_LIMIT = 500


class StoreClosedError(RuntimeError):
    """The store was closed; nothing more can be written."""


@dataclass(frozen=True)
class AcceptedEvent:
    """An event that passed the rules: when it arrived, its name and customer key, its e-mail if any, and the JSON as sent."""

    received_at: float
    event: str
    distinct_id: str
    email: str | None
    body: str


@dataclass(frozen=True)
class Rejection:
    """An event answered 400: when, its name if it had a usable one, and the reasons given."""

    received_at: float
    event: str | None
    reasons: Sequence[str]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_row(row: sqlite3.Row) -> dict[str, Any]:
    body = json.loads(row["body"])
    properties = body.get("properties") if isinstance(body, dict) else None
    return {
        "id": row["id"],
        "at": _iso(row["received_at"]),
        "ts": row["received_at"],
        "event": row["event"],
        "distinct_id": row["distinct_id"],
        "properties": properties if isinstance(properties, dict) else {},
    }


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class EventStore:
    """The sandbox's SQLite store (see the module docstring for the schema and the single-writer design).

    :param path: the SQLite file; created with its tables when missing, reused (data kept) when present.
    :param batch_size: the most rows committed in one transaction.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 1000) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self._queue: queue.SimpleQueue[AcceptedEvent | Rejection | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0
        self._committed = 0
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------------

    def open(self, *, reset: bool = False) -> EventStore:
        """Create the tables (or check the version of an existing file) and start the writer thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RuntimeError(f"{self.path} has sandbox schema version {version}; this version reads {SCHEMA_VERSION}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            if reset:
                conn.executescript("DELETE FROM events; DELETE FROM links; DELETE FROM rejections;")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.commit()
        finally:
            conn.close()
        self._thread = threading.Thread(target=self._write_loop, name="sandbox-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer. Later writes raise :class:`StoreClosedError`."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        """False once the writer thread has died on an error (the sandbox then answers 503)."""
        return self._error is None and self._thread is not None and self._thread.is_alive()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # -- writing ---------------------------------------------------------------------------------------------------------

    def add(self, item: AcceptedEvent | Rejection) -> None:
        """Queue an accepted event or a rejection for the writer."""
        with self._cond:
            if self._closed:
                raise StoreClosedError("the sandbox store is closed")
            if self._error is not None:
                raise StoreClosedError(f"the sandbox store failed: {self._error}")
            self._submitted += 1
        self._queue.put(item)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until every row queued before this call is committed (or the writer failed)."""
        with self._cond:
            target = self._submitted
            self._cond.wait_for(lambda: self._committed >= target or self._error is not None or not self.healthy, timeout)

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            stop = False
            while not stop:
                batch: list[AcceptedEvent | Rejection] = []
                item = self._queue.get()
                while item is not None:
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                stop = item is None
                if batch:
                    self._commit(conn, batch)
                with self._cond:
                    self._committed += len(batch)
                    self._cond.notify_all()
        except BaseException as exc:  # the writer must not die silently: readers and writers are told
            log.exception("Sandbox store writer stopped")
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            conn.close()

    @staticmethod
    def _commit(conn: sqlite3.Connection, batch: Iterable[AcceptedEvent | Rejection]) -> None:
        events, links, rejections = [], [], []
        for item in batch:
            if isinstance(item, AcceptedEvent):
                events.append((item.received_at, item.event, item.distinct_id, item.email, item.body))
                if item.email is not None:
                    links.append((item.distinct_id, item.email))
            else:
                rejections.append((item.received_at, item.event, json.dumps(list(item.reasons))))
        with conn:
            conn.executemany("INSERT INTO events (received_at, event, distinct_id, email, body) VALUES (?,?,?,?,?)", events)
            conn.executemany("INSERT OR IGNORE INTO links (distinct_id, email) VALUES (?,?)", links)
            conn.executemany("INSERT INTO rejections (received_at, event, reasons) VALUES (?,?,?)", rejections)

    # -- reading ---------------------------------------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        self.sync()
        return self._connect()

    def stats(self) -> dict[str, Any]:
        """Totals: accepted and rejected events, distinct customers, and per event name accepted/rejected/customers."""
        conn = self._read()
        try:
            per_event: dict[str, dict[str, Any]] = {}
            for row in conn.execute(
                "SELECT event, COUNT(*) AS n, COUNT(DISTINCT distinct_id) AS c, MAX(received_at) AS last "
                "FROM events GROUP BY event"
            ):
                per_event[row["event"]] = {
                    "event": row["event"],
                    "accepted": row["n"],
                    "rejected": 0,
                    "customers": row["c"],
                    "last_at": _iso(row["last"]),
                }
            for row in conn.execute("SELECT COALESCE(event, '') AS event, COUNT(*) AS n FROM rejections GROUP BY 1"):
                entry = per_event.setdefault(
                    row["event"], {"event": row["event"], "accepted": 0, "rejected": 0, "customers": 0, "last_at": None}
                )
                entry["rejected"] = row["n"]
            accepted = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            rejected = conn.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
            customers = conn.execute("SELECT COUNT(DISTINCT distinct_id) FROM events").fetchone()[0]
        finally:
            conn.close()
        ordered = sorted(per_event.values(), key=lambda e: (-e["accepted"], -e["rejected"], e["event"]))
        return {"accepted": accepted, "rejected": rejected, "distinct_ids": customers, "events": ordered}

    def latest(self, limit: int = 50, event: str | None = None) -> list[dict[str, Any]]:
        """The most recent accepted events, newest first, optionally of one event name."""
        conn = self._read()
        try:
            if event:
                rows = conn.execute("SELECT * FROM events WHERE event = ? ORDER BY id DESC LIMIT ?", (event, limit))
            else:
                rows = conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
            return [_event_row(r) for r in rows]
        finally:
            conn.close()

    def rejections(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent rejections, newest first."""
        conn = self._read()
        try:
            rows = conn.execute("SELECT * FROM rejections ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        finally:
            conn.close()
        return [
            {"id": r["id"], "at": _iso(r["received_at"]), "event": r["event"], "reasons": json.loads(r["reasons"])} for r in rows
        ]

    def customer(self, query: str) -> dict[str, Any]:
        """One customer's timeline, found by a distinct_id or an e-mail and widened along identity links.

        Every accepted event that carried a customer e-mail (identify, purchase, optin, ...) links its ``distinct_id`` to that
        e-mail; the timeline follows those links both ways, so a device id identified as ``jane@example.com`` shows Jane's
        e-mail events and the device's anonymous events together.
        """
        conn = self._read()
        try:
            ids, emails = self._identity(conn, query.strip())
            keys = sorted(ids | emails)
            rows = conn.execute(
                f"SELECT * FROM events WHERE distinct_id IN ({_placeholders(len(keys))}) ORDER BY id DESC LIMIT ?",
                (*keys, _TIMELINE_LIMIT),
            ).fetchall()
            total = conn.execute(
                f"SELECT COUNT(*) FROM events WHERE distinct_id IN ({_placeholders(len(keys))})", keys
            ).fetchone()[0]
        finally:
            conn.close()
        events = [_event_row(r) for r in rows]
        profile: dict[str, Any] = {}
        subscribed: bool | None = None
        counts: dict[str, int] = {}
        for e in reversed(events):  # oldest first, so later attribute values win
            counts[e["event"]] = counts.get(e["event"], 0) + 1
            customer = e["properties"].get("customer")
            if isinstance(customer, dict):
                profile.update(customer)
            if e["event"] in ("optin", "unsubscribe"):
                subscribed = e["event"] == "optin"
        return {
            "query": query,
            "found": total > 0,
            "distinct_ids": sorted(i for i in ids if not is_email(i)),
            "emails": sorted(emails | {i for i in ids if is_email(i)}),
            "profile": profile,
            "subscribed": subscribed,
            "total": total,
            "counts": counts,
            "events": events,
        }

    @staticmethod
    def _identity(conn: sqlite3.Connection, query: str) -> tuple[set[str], set[str]]:
        ids: set[str] = {query}
        emails: set[str] = {query} if is_email(query) else set()
        while len(ids) + len(emails) < _MAX_IDENTIFIERS:
            keys = sorted(ids | emails)
            marks = _placeholders(len(keys))
            found = conn.execute(
                f"SELECT distinct_id, email FROM links WHERE distinct_id IN ({marks}) OR email IN ({marks})", (*keys, *keys)
            ).fetchall()
            new_ids = {r["distinct_id"] for r in found} - ids
            new_emails = {r["email"] for r in found} - emails
            if not new_ids and not new_emails:
                break
            ids |= new_ids
            emails |= new_emails
        return ids, emails

    def audience(self, event: str, min_count: int, days: float, *, now: float, limit: int = 100) -> dict[str, Any]:
        """Customers who did ``event`` at least ``min_count`` times in the last ``days`` days (before ``now``).

        A customer is an e-mail when the distinct_id is linked to one (the smallest, if several), otherwise the distinct_id:
        a device id's events count for the e-mail it was identified as.
        """
        since = now - days * 86400.0
        query = """
            SELECT COALESCE(l.email, e.distinct_id) AS customer, COUNT(*) AS n, MAX(e.received_at) AS last
            FROM events e
            LEFT JOIN (SELECT distinct_id, MIN(email) AS email FROM links GROUP BY distinct_id) l ON l.distinct_id = e.distinct_id
            WHERE e.event = ? AND e.received_at >= ? AND e.received_at <= ?
            GROUP BY customer HAVING COUNT(*) >= ?
        """
        conn = self._read()
        try:
            total = conn.execute(f"SELECT COUNT(*) FROM ({query})", (event, since, now, min_count)).fetchone()[0]
            rows = conn.execute(f"{query} ORDER BY n DESC, customer LIMIT ?", (event, since, now, min_count, limit)).fetchall()
        finally:
            conn.close()
        return {
            "event": event,
            "min": min_count,
            "days": days,
            "since": _iso(since),
            "count": total,
            "customers": [{"customer": r["customer"], "count": r["n"], "last_at": _iso(r["last"])} for r in rows],
        }
