"""Sync state: what a sync delivered, so a rerun sends only what changed, never twice, and keeps what failed.

A plain module (no Airflow import), built on SQLAlchemy Core only. It runs on SQLAlchemy 1.4 and 2.x, on SQLite and
PostgreSQL (native upserts), and on other dialects such as MySQL through a portable read-then-write path (tested on MariaDB).

The Events API answers 202 to everything and has no idempotency key, so the provider itself remembers, per event key, what it
last sent and how that went::

    store = StateStore("postgresql://...")           # or an Engine; tables are created on first use
    with store.sync("orders_dag.push_customers") as session:
        for kept in session.pending_failed():         # failed events of earlier runs, oldest first
            ...                                       # send kept.payload again, then session.record(...)
        for item in session.to_send(candidates, mode="changed"):   # (key, fingerprint, item), looked up in batches
            ...                                       # send it, then session.record(key, fingerprint, status, ...)
    # leaving the block flushes the last recorded outcomes

Keys and fingerprints come from :func:`event_key` and :func:`fingerprint`. Outcomes are buffered and written in short
transactions of at most ``flush_every`` outcomes (default 500), and at least once every ``flush_interval`` seconds (default 1)
while outcomes keep arriving. That window is the bound on duplicates after a crash: a worker killed at any moment has at
most ``flush_every`` delivered-but-unrecorded events, plus the requests that were in flight, and only those are sent again.

The schema (documented in ``docs/state-store.md``), with the default ``table_prefix="bluecore_"``:

``bluecore_state_meta``
    ``name`` (primary key), ``value``. The row ``schema_version`` holds :data:`SCHEMA_VERSION`; a store written by a newer
    version of this module is refused, an older one is migrated in place (see ``_MIGRATIONS``).
``bluecore_sync_state``
    one row per ``(sync_id, event_key)``: ``sync_partition``, ``event_name``, ``status`` (delivered / failed / rejected),
    ``fingerprint`` (of the last event recorded for the key), ``attempts`` (HTTP attempts for that fingerprint, summed over
    runs), ``last_reason``, ``payload`` (the exact body, kept for failed events only), ``failed_run`` / ``failed_seq`` (the
    order in which events first failed), ``created_at``, ``updated_at`` and ``delivered_at`` (naive UTC).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool

from airflow_provider_bluecore.events import derive_order_id, redact
from airflow_provider_bluecore.exceptions import BluecoreConfigError

__all__ = [
    "CUSTOMER_KEYED_EVENTS",
    "MODES",
    "SCHEMA_VERSION",
    "STATUSES",
    "Decision",
    "KeyProblem",
    "PendingEvent",
    "StateStore",
    "SyncSession",
    "SyncStats",
    "default_mode",
    "event_key",
    "fingerprint",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The version of the tables this module writes. Bump it together with a new entry in ``_MIGRATIONS``.
SCHEMA_VERSION = 1
#: The outcome of an event, as recorded.
STATUSES: tuple[str, ...] = ("delivered", "failed", "rejected")
#: ``changed``: send a key when its fingerprint differs from the last delivered one; ``new``: only keys never delivered;
#: ``all``: everything, without looking at the state.
MODES: tuple[str, ...] = ("changed", "new", "all")
#: Events keyed by their customer (``distinct_id``): the latest profile or consent state of a customer is what matters.
CUSTOMER_KEYED_EVENTS = frozenset({"customer_patch", "identify", "optin", "unsubscribe"})

MAX_SYNC_ID_LENGTH = 200
MAX_KEY_LENGTH = 255
MAX_PARTITION_LENGTH = 64
_MAX_REASON = 1000
_LOOKUP_CHUNK = 900  # keys per IN (...) lookup; below the 999-variable limit of old SQLite builds


class Decision(str, Enum):
    """What to do with one candidate event, given the state."""

    SEND = "send"
    #: mode ``changed``: delivered before with the same fingerprint.
    SKIP_UNCHANGED = "skip_unchanged"
    #: mode ``new``: the key was delivered before (whatever its content now).
    SKIP_DELIVERED = "skip_delivered"
    #: rejected before with the same fingerprint: resent only once the source row changes.
    SKIP_REJECTED_UNCHANGED = "skip_rejected_unchanged"
    #: the same event failed in an earlier run and is being resent by this session from :meth:`SyncSession.pending_failed`.
    SKIP_RESENDING = "skip_resending"


@dataclass(frozen=True)
class PendingEvent:
    """A failed event kept from an earlier run, to be sent again.

    :param key: its event key.
    :param event_name: the event name.
    :param fingerprint: the fingerprint it was recorded with; record the new outcome with the same one.
    :param payload: the exact JSON body that was to be POSTed.
    :param attempts: HTTP attempts made so far for it, over all runs.
    :param reason: why it failed last time.
    """

    key: str
    event_name: str
    fingerprint: str
    payload: bytes
    attempts: int
    reason: str | None


@dataclass(frozen=True)
class KeyProblem:
    """A key whose last event was rejected or failed, as listed by :meth:`SyncSession.problems`.

    :param key: the event key, redacted unless asked otherwise.
    :param event_name: the event name.
    :param status: ``rejected`` or ``failed``.
    :param attempts: HTTP attempts for that event, over all runs.
    :param reason: the last reason recorded.
    :param updated_at: when it was last recorded (naive UTC).
    """

    key: str
    event_name: str
    status: str
    attempts: int
    reason: str | None
    updated_at: datetime | None


@dataclass
class SyncStats:
    """What one session did: candidates decided, skipped by reason, events resent from earlier failures, outcomes recorded."""

    decided: int = 0
    to_send: int = 0
    skipped_unchanged: int = 0
    skipped_already_delivered: int = 0
    skipped_rejected_unchanged: int = 0
    skipped_resending: int = 0
    resent_from_failures: int = 0
    recorded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    flushes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a JSON-serialisable dict."""
        return asdict(self)


def fingerprint(content: bytes | Mapping[str, Any] | Sequence[Any]) -> str:
    """A 32-hex-digit BLAKE2b hash of an event: of the exact bytes when given bytes (the prepared body), else of the canonical
    JSON (sorted keys, no spaces; values JSON cannot hold are turned into their ``str``) of a mapping or list."""
    if not isinstance(content, bytes | bytearray | memoryview):
        content = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hashlib.blake2b(content, digest_size=16).hexdigest()


def event_key(event: Mapping[str, Any], key_value: Any = None) -> str:
    """The state key of an event: ``<event name>:<identity>``.

    The identity is the ``distinct_id`` for ``customer_patch``/``identify``/``optin``/``unsubscribe``, the ``order_id`` for
    ``purchase`` (derived with :func:`~airflow_provider_bluecore.events.derive_order_id` when absent), ``key_value`` (the
    ``key_column`` value of the source row) for other events when given, and otherwise ``#`` plus the fingerprint of the
    event's content. The event name is part of the key, so an ``identify`` and a ``customer_patch`` of one customer are
    remembered separately. Keys longer than 255 characters are replaced by ``<event name>:~<sha256 of the key>``.
    """
    name = str(event.get("event") or "")
    raw = event.get("properties")
    props: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    identity: Any
    if name in CUSTOMER_KEYED_EVENTS:
        identity = props.get("distinct_id")
    elif name == "purchase":
        identity = props.get("order_id")
        if identity is None:
            identity = derive_order_id(props)
    else:
        identity = key_value
    text = f"#{fingerprint(event)}" if identity is None else str(identity)
    key = f"{name}:{text}"
    if len(key) > MAX_KEY_LENGTH:
        key = f"{name[:64]}:~{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def default_mode(event_name: str, key_column: str | None = None) -> str:
    """``new`` for purchases and for events keyed by a ``key_column`` (an event happens once), ``changed`` otherwise."""
    return "new" if event_name == "purchase" or key_column else "changed"


def redact_key(key: str) -> str:
    """A key safe to show: the event name, then the redacted identity (``customer_patch:j***@example.com``)."""
    name, sep, identity = key.partition(":")
    if not sep:
        return redact(key)
    if identity.startswith(("#", "~")):
        return key  # a hash reveals nothing
    return f"{name}:{redact(identity)}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers and one writer work at once; the busy timeout makes a second writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _tables(metadata: sa.MetaData, prefix: str) -> tuple[sa.Table, sa.Table]:
    meta = sa.Table(
        f"{prefix}state_meta",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    state = sa.Table(
        f"{prefix}sync_state",
        metadata,
        sa.Column("sync_id", sa.String(MAX_SYNC_ID_LENGTH), primary_key=True),
        sa.Column("event_key", sa.String(MAX_KEY_LENGTH), primary_key=True),
        sa.Column("sync_partition", sa.String(MAX_PARTITION_LENGTH), nullable=False, default=""),
        sa.Column("event_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_reason", sa.String(_MAX_REASON), nullable=True),
        sa.Column("payload", sa.LargeBinary(length=2**24 - 1), nullable=True),
        sa.Column("failed_run", sa.BigInteger, nullable=True),
        sa.Column("failed_seq", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("delivered_at", sa.DateTime, nullable=True),
        sa.Index(f"ix_{prefix}sync_state_status", "sync_id", "status"),
    )
    return meta, state


# Migrations from version N to N+1, as functions of (connection, state table, meta table). Version 1 is the first schema,
# so there is nothing to migrate yet; a version 2 adds ``1: _migrate_1_to_2`` here.
_MIGRATIONS: Mapping[int, Callable[[Connection, sa.Table, sa.Table], None]] = {}


def _is_transient(exc: sa.exc.DBAPIError) -> bool:
    """Lock contention worth retrying: SQLite busy/locked, PostgreSQL deadlock or serialization failure, MySQL deadlock."""
    code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    if code in ("40001", "40P01"):
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text or "deadlock" in text


class StateStore:
    """Where sync state lives: a SQLAlchemy engine and the two tables of this module.

    :param engine_or_url: an Engine, or a SQLAlchemy URL (``sqlite:////path/state.db``, ``postgresql://user@host/db``). An
        engine created from a URL is owned (and disposed by :meth:`close`). SQLite connections get WAL mode and a 30 s busy
        timeout, so parallel tasks on one machine wait for each other instead of failing.
    :param table_prefix: prefix of the table names (default ``bluecore_``).
    :param schema: the database schema holding the tables (PostgreSQL), or None for the default.
    :param flush_every: outcomes buffered before they are written; with in-flight requests, the bound on duplicates after a
        crash.
    :param flush_interval: seconds after which buffered outcomes are written at the next recorded outcome or lookup.
    """

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        table_prefix: str = "bluecore_",
        schema: str | None = None,
        flush_every: int = 500,
        flush_interval: float = 1.0,
    ) -> None:
        if flush_every < 1:
            raise BluecoreConfigError(f"flush_every: must be at least 1, got {flush_every}")
        if isinstance(engine_or_url, Engine):
            self.engine = engine_or_url
            self._owns_engine = False
        else:
            self.engine = _create_engine(engine_or_url)
            self._owns_engine = True
        if self.engine.dialect.name == "sqlite" and not sa.event.contains(self.engine, "connect", _sqlite_on_connect):
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self.meta_table, self.table = _tables(sa.MetaData(schema=schema), table_prefix)
        self._schema_ready = False

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Dispose of the engine when this store created it."""
        if self._owns_engine:
            self.engine.dispose()

    def ensure_schema(self) -> None:
        """Create the tables when missing, migrate them when older, refuse them when newer. Safe to race with other processes."""
        if self._schema_ready:
            return
        try:
            self.meta_table.metadata.create_all(self.engine, checkfirst=True)
        except sa.exc.DBAPIError:
            # Another process created them between our check and our CREATE: fine if they are there now.
            inspector = sa.inspect(self.engine)
            if not all(inspector.has_table(t.name, schema=t.schema) for t in (self.meta_table, self.table)):
                raise
        with self.engine.connect() as conn:
            missing = self._read_version(conn) is None
        if missing:
            try:
                with self.engine.begin() as conn:
                    conn.execute(self.meta_table.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
            except sa.exc.IntegrityError:
                pass  # written by a concurrent first use
        with self.engine.begin() as conn:
            version = self._read_version(conn) or SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise BluecoreConfigError(
                    f"state store: schema version {version} in {self.meta_table.name} is newer than this provider supports "
                    f"({SCHEMA_VERSION}); upgrade airflow-provider-bluecore"
                )
            for step in range(version, SCHEMA_VERSION):
                log.info("Migrating the sync state tables from schema version %d to %d", step, step + 1)
                _MIGRATIONS[step](conn, self.table, self.meta_table)
                conn.execute(
                    self.meta_table.update().where(self.meta_table.c.name == "schema_version").values(value=str(step + 1))
                )
        self._schema_ready = True

    def schema_version(self) -> int | None:
        """The schema version stored in the database, or None before first use."""
        if not sa.inspect(self.engine).has_table(self.meta_table.name, schema=self.meta_table.schema):
            return None
        with self.engine.connect() as conn:
            return self._read_version(conn)

    def _read_version(self, conn: Connection) -> int | None:
        value = conn.execute(
            sa.select(self.meta_table.c.value).where(self.meta_table.c.name == "schema_version")
        ).scalar_one_or_none()
        return None if value is None else int(value)

    def sync(self, sync_id: str, *, partition: str = "") -> SyncSession:
        """A session over one sync's state, creating the tables on first use.

        :param sync_id: the sync's identity (e.g. ``<dag_id>.<task_id>``); one sync's state never touches another's.
        :param partition: for parallel partitions of one sync (mapped tasks): each resends only the failures it recorded,
            while all of them share the delivered state.
        """
        if not isinstance(sync_id, str) or not sync_id.strip() or len(sync_id) > MAX_SYNC_ID_LENGTH:
            raise BluecoreConfigError(f"sync_id: must be a non-empty string of at most {MAX_SYNC_ID_LENGTH} characters")
        if len(partition) > MAX_PARTITION_LENGTH:
            raise BluecoreConfigError(f"partition: must be at most {MAX_PARTITION_LENGTH} characters")
        self.ensure_schema()
        return SyncSession(self, sync_id, partition)

    def sync_ids(self) -> list[str]:
        """Every sync id with state in this store, sorted."""
        if self.schema_version() is None:
            return []
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(self.table.c.sync_id).distinct().order_by(self.table.c.sync_id)).scalars())


def _create_engine(url: str | URL) -> Engine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # One shared connection, or every connection would see its own empty in-memory database.
        return sa.create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    return sa.create_engine(parsed, pool_pre_ping=True)


class SyncSession:
    """The state of one sync, for one run (and one partition). Not thread-safe: use one per thread.

    Call :meth:`pending_failed` first (kept failures are resent before anything else), then :meth:`to_send` or
    :meth:`decide` for the run's candidates, :meth:`record` for every outcome, and :meth:`close` (or leave the ``with``
    block) to write the last ones.
    """

    def __init__(self, store: StateStore, sync_id: str, partition: str = "") -> None:
        self.store = store
        self.sync_id = sync_id
        self.partition = partition
        self.stats = SyncStats()
        # Identifies this run among the failures: microseconds since the epoch, so later runs sort after earlier ones.
        self.run_id = time.time_ns() // 1000
        self._seq = 0
        self._resending = False
        self._buffer: dict[str, dict[str, Any]] = {}
        self._buffer_since = 0.0
        self._t = store.table
        self._native_statement: Any = None  # the upsert statement, built on first write
        self._sqlite_upsert: tuple[str, list[str]] | None = None  # the compiled SQLite upsert and its parameter order

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Outcomes recorded before an error are real deliveries: write them even when the run fails.
        self.close()

    def close(self) -> None:
        """Write the buffered outcomes."""
        self.flush()

    # -- reading -----------------------------------------------------------------------------------------------------

    def pending_failed(self, chunk_size: int = 500) -> Iterator[PendingEvent]:
        """Failed events kept from earlier runs of this partition, oldest first (so per customer in their original order).

        Streams in chunks (bounded memory). From the first call on, :meth:`decide` treats those events as being resent by
        this session and answers :attr:`Decision.SKIP_RESENDING` when the query brings the same event again.
        """
        self._resending = True
        t = self._t
        order = (t.c.failed_run, t.c.failed_seq, t.c.event_key)
        after: tuple[Any, ...] | None = None
        while True:
            query = (
                sa.select(t.c.event_key, t.c.event_name, t.c.fingerprint, t.c.payload, t.c.attempts, t.c.last_reason, *order)
                .where(
                    t.c.sync_id == self.sync_id,
                    t.c.status == "failed",
                    t.c.sync_partition == self.partition,
                    t.c.failed_run < self.run_id,
                    t.c.payload.is_not(None),
                )
                .order_by(*order)
                .limit(chunk_size)
            )
            if after is not None:
                query = query.where(sa.tuple_(*order) > sa.tuple_(*after))
            with self.store.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                self.stats.resent_from_failures += 1
                yield PendingEvent(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])
            if len(rows) < chunk_size:
                return
            after = tuple(rows[-1][-3:])

    def decide(self, items: Sequence[tuple[str, str]], mode: str = "changed") -> list[Decision]:
        """The decision for each ``(key, fingerprint)``, looked up in batches (one query per 900 keys).

        :param items: the candidates' keys and fingerprints, in order.
        :param mode: ``changed``, ``new`` or ``all`` (see :data:`MODES`).
        """
        if mode not in MODES:
            raise BluecoreConfigError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        decisions: list[Decision] = []
        for start in range(0, len(items), _LOOKUP_CHUNK):
            chunk = items[start : start + _LOOKUP_CHUNK]
            known = {} if mode == "all" else self._lookup({key for key, _ in chunk})
            decisions.extend(self._decide_one(known.get(key), fp, mode) for key, fp in chunk)
        self._maybe_flush()
        for decision in decisions:
            self._count(decision)
        return decisions

    def to_send(
        self, candidates: Iterable[tuple[str, str, T]], mode: str = "changed", chunk_size: int = _LOOKUP_CHUNK
    ) -> Iterator[T]:
        """Stream the items worth sending out of ``(key, fingerprint, item)`` candidates, deciding a chunk at a time."""
        if mode not in MODES:
            raise BluecoreConfigError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        chunk: list[tuple[str, str, T]] = []
        for candidate in candidates:
            chunk.append(candidate)
            if len(chunk) >= chunk_size:
                yield from self._send_from(chunk, mode)
                chunk = []
        if chunk:
            yield from self._send_from(chunk, mode)

    def _send_from(self, chunk: list[tuple[str, str, T]], mode: str) -> Iterator[T]:
        decisions = self.decide([(key, fp) for key, fp, _ in chunk], mode)
        for (_, _, item), decision in zip(chunk, decisions, strict=True):
            if decision is Decision.SEND:
                yield item

    def _lookup(self, keys: set[str]) -> dict[str, Any]:
        t = self._t
        query = sa.select(t.c.event_key, t.c.status, t.c.fingerprint, t.c.delivered_at, t.c.sync_partition, t.c.failed_run).where(
            t.c.sync_id == self.sync_id, t.c.event_key.in_(sorted(keys))
        )
        with self.store.engine.connect() as conn:
            known: dict[str, Any] = {row[0]: tuple(row) for row in conn.execute(query)}
        # What this session recorded but has not written yet is newer than the table.
        for key in keys & self._buffer.keys():
            b = self._buffer[key]
            old = known.get(key)
            delivered_at = True if b["status"] == "delivered" else (old[3] if old is not None else None)
            failed_run = b["failed_run"]
            if old is not None and old[1] == b["status"] == "failed" and old[2] == b["fingerprint"]:
                failed_run = old[5]  # failed again: it keeps its place (and stays "being resent")
            known[key] = (key, b["status"], b["fingerprint"], delivered_at, self.partition, failed_run)
        return known

    def _decide_one(self, row: Any, fp: str, mode: str) -> Decision:
        if mode == "all" or row is None:
            return Decision.SEND
        _, status, known_fp, delivered_at, partition, failed_run = row
        same = known_fp == fp
        if status == "failed" and same and self._resending and partition == self.partition and failed_run < self.run_id:
            return Decision.SKIP_RESENDING
        if status == "rejected" and same:
            return Decision.SKIP_REJECTED_UNCHANGED
        if mode == "new":
            return Decision.SKIP_DELIVERED if delivered_at is not None else Decision.SEND
        return Decision.SKIP_UNCHANGED if status == "delivered" and same else Decision.SEND

    def _count(self, decision: Decision) -> None:
        s = self.stats
        s.decided += 1
        if decision is Decision.SEND:
            s.to_send += 1
        elif decision is Decision.SKIP_UNCHANGED:
            s.skipped_unchanged += 1
        elif decision is Decision.SKIP_DELIVERED:
            s.skipped_already_delivered += 1
        elif decision is Decision.SKIP_REJECTED_UNCHANGED:
            s.skipped_rejected_unchanged += 1
        else:
            s.skipped_resending += 1

    def counts(self) -> dict[str, int]:
        """Keys per status for this sync (all partitions), every status present."""
        self.flush()
        t = self._t
        query = sa.select(t.c.status, sa.func.count()).where(t.c.sync_id == self.sync_id).group_by(t.c.status)
        with self.store.engine.connect() as conn:
            found = {status: int(n) for status, n in conn.execute(query)}
        return {**dict.fromkeys(STATUSES, 0), **found}

    def problems(self, limit: int = 50, show_pii: bool = False, status: str | None = None) -> list[KeyProblem]:
        """Keys whose last event was rejected or failed, most recent first, keys redacted unless ``show_pii``.

        :param limit: at most this many.
        :param show_pii: show the keys in full (they contain customer ids and e-mail addresses).
        :param status: only ``rejected`` or only ``failed``.
        """
        if status not in (None, "rejected", "failed"):
            raise BluecoreConfigError(f"status: must be 'rejected' or 'failed', got {status!r}")
        self.flush()
        t = self._t
        wanted = [status] if status else ["failed", "rejected"]
        query = (
            sa.select(t.c.event_key, t.c.event_name, t.c.status, t.c.attempts, t.c.last_reason, t.c.updated_at)
            .where(t.c.sync_id == self.sync_id, t.c.status.in_(wanted))
            .order_by(t.c.updated_at.desc(), t.c.event_key)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [KeyProblem(r[0] if show_pii else redact_key(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # -- writing -----------------------------------------------------------------------------------------------------

    def record(
        self,
        key: str,
        fingerprint: str,
        status: str,
        *,
        event_name: str | None = None,
        attempts: int = 1,
        reason: str | Sequence[str] | None = None,
        payload: bytes | None = None,
    ) -> None:
        """Remember the outcome of one event; written within ``flush_every`` outcomes or ``flush_interval`` seconds.

        :param key: the event key (:func:`event_key`).
        :param fingerprint: the event's fingerprint (:func:`fingerprint`).
        :param status: ``delivered``, ``failed`` or ``rejected``.
        :param event_name: the event name; by default the part of the key before the first ``:``.
        :param attempts: HTTP attempts made for it in this run.
        :param reason: why it failed or was rejected (a string or a list of reasons).
        :param payload: the exact body; kept for failed events only, so a later run can resend it.
        """
        if status not in STATUSES:
            raise BluecoreConfigError(f"status: must be one of {', '.join(STATUSES)}, got {status!r}")
        if not isinstance(reason, str | None):
            reason = "; ".join(reason)
        if status == "failed" and payload is None:
            log.warning("A failed event was recorded without its payload; it cannot be resent by a later run")
        self._seq += 1
        previous = self._buffer.pop(key, None)
        if previous is not None and previous["fingerprint"] == fingerprint and previous["status"] != "delivered":
            attempts += previous["attempts"]
        if not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer[key] = {
            "event_key": key,
            "event_name": (event_name or key.partition(":")[0])[:64],
            "status": status,
            "fingerprint": fingerprint,
            "attempts": attempts,
            "last_reason": reason[:_MAX_REASON] if reason else None,
            "payload": payload if status == "failed" else None,
            "failed_run": self.run_id if status == "failed" else None,
            "failed_seq": self._seq if status == "failed" else None,
        }
        self.stats.recorded[status] += 1
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if self._buffer and (
            len(self._buffer) >= self.store.flush_every or time.monotonic() - self._buffer_since >= self.store.flush_interval
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered outcomes now, in one short transaction (retried on lock contention)."""
        if not self._buffer:
            return
        now: datetime | str = _utcnow()
        if self.store.engine.dialect.name == "sqlite":
            now = now.strftime("%Y-%m-%d %H:%M:%S.%f")  # type: ignore[union-attr]  # SQLAlchemy's SQLite storage format
        rows = []
        sync_id, partition = self.sync_id, self.partition
        for key in sorted(self._buffer):  # one key order for every writer, so concurrent upserts cannot deadlock
            row = self._buffer[key]  # completed in place: the buffer is cleared once written
            row["sync_id"], row["sync_partition"], row["created_at"], row["updated_at"] = sync_id, partition, now, now
            row["delivered_at"] = now if row["status"] == "delivered" else None
            rows.append(row)
        for attempt in range(6):
            try:
                with self.store.engine.begin() as conn:
                    self._upsert(conn, rows)
                break
            except sa.exc.DBAPIError as exc:
                if attempt == 5 or not _is_transient(exc):
                    raise
                log.info("Sync state busy (%s); retrying the write", type(exc.orig).__name__)
                time.sleep(0.05 * 2**attempt)
        self._buffer.clear()
        self.stats.flushes += 1

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            # SQLAlchemy's per-row parameter processing costs more than SQLite's own work here; the statement has no
            # literal binds, so hand the driver plain tuples in the compiled order (flush() gave the timestamps as text).
            # Compiled once per session: compiling costs as much as writing a few hundred rows.
            if self._sqlite_upsert is None:
                compiled = self._native_upsert(dialect).compile(dialect=conn.dialect)
                self._sqlite_upsert = str(compiled), list(compiled.positiontup or ())
            sql, names = self._sqlite_upsert
            conn.exec_driver_sql(sql, [tuple([row[n] for n in names]) for row in rows])
        elif dialect == "postgresql":
            conn.execute(self._native_upsert(dialect), rows)  # SQLAlchemy caches the compiled form itself
        else:
            self._upsert_portable(conn, rows)

    def _native_upsert(self, dialect: str) -> Any:
        """``INSERT ... ON CONFLICT DO UPDATE`` for SQLite or PostgreSQL, with the rules of :meth:`record` (built once)."""
        if self._native_statement is None:
            self._native_statement = self._build_native_upsert(dialect)
        return self._native_statement

    def _build_native_upsert(self, dialect: str) -> Any:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        t = self._t
        stmt = insert(t)
        new = stmt.excluded
        delivered: sa.ColumnElement[str] = sa.literal_column("'delivered'")
        failed: sa.ColumnElement[str] = sa.literal_column("'failed'")
        same_event = sa.and_(t.c.fingerprint == new.fingerprint, t.c.status != delivered)
        still_failing = sa.and_(new.status == failed, t.c.status == failed, t.c.fingerprint == new.fingerprint)
        return stmt.on_conflict_do_update(
            index_elements=[t.c.sync_id, t.c.event_key],
            set_={
                "sync_partition": new.sync_partition,
                "event_name": new.event_name,
                "status": new.status,
                "fingerprint": new.fingerprint,
                "attempts": sa.case((same_event, t.c.attempts + new.attempts), else_=new.attempts),
                "last_reason": new.last_reason,
                "payload": new.payload,
                "failed_run": sa.case((still_failing, t.c.failed_run), else_=new.failed_run),
                "failed_seq": sa.case((still_failing, t.c.failed_seq), else_=new.failed_seq),
                "updated_at": new.updated_at,
                "delivered_at": sa.func.coalesce(new.delivered_at, t.c.delivered_at),
            },
        )

    def _upsert_portable(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Read-then-write for dialects without ``ON CONFLICT`` (MySQL and others); same rules as the native upsert."""
        t = self._t
        keys = [r["event_key"] for r in rows]
        existing: dict[str, Any] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            query = sa.select(
                t.c.event_key, t.c.status, t.c.fingerprint, t.c.attempts, t.c.failed_run, t.c.failed_seq, t.c.delivered_at
            ).where(t.c.sync_id == self.sync_id, t.c.event_key.in_(keys[start : start + _LOOKUP_CHUNK]))
            existing.update({r[0]: r for r in conn.execute(query.with_for_update())})
        inserts, updates = [], []
        for row in rows:
            old = existing.get(row["event_key"])
            if old is None:
                inserts.append(row)
                continue
            _, status, fp, attempts, failed_run, failed_seq, delivered_at = old
            merged = dict(row, b_key=row["event_key"], b_sync=self.sync_id)
            if fp == row["fingerprint"] and status != "delivered":
                merged["attempts"] = attempts + row["attempts"]
            if row["status"] == "failed" and status == "failed" and fp == row["fingerprint"]:
                merged["failed_run"], merged["failed_seq"] = failed_run, failed_seq
            merged["delivered_at"] = row["delivered_at"] or delivered_at
            del merged["created_at"], merged["event_key"], merged["sync_id"]
            updates.append(merged)
        if inserts:
            conn.execute(t.insert(), inserts)
        if updates:
            stmt = (
                t.update()
                .where(t.c.sync_id == sa.bindparam("b_sync"), t.c.event_key == sa.bindparam("b_key"))
                .values({c: sa.bindparam(c) for c in updates[0] if not c.startswith("b_")})
            )
            conn.execute(stmt, updates)

    def reset(self) -> int:
        """Forget everything about this sync (all partitions): the next run sends everything again. Returns rows deleted."""
        self._buffer.clear()
        with self.store.engine.begin() as conn:
            result = conn.execute(self._t.delete().where(self._t.c.sync_id == self.sync_id))
        return int(result.rowcount or 0)
