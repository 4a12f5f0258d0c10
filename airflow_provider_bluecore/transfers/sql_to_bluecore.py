"""SqlToBluecoreOperator: the rows of a SQL query, streamed into Bluecore events.

The pipeline of one run, each step a lazy iterator so memory stays bounded whatever the size of the table::

    rows (fetchmany chunks; a server-side cursor on PostgreSQL)
      -> RowMapper.map(rows)            MappedEvent: the event, its source row number and key, or the mapping's problems
      -> backfill guard                 behavioural events of a refused run become rejects (only with row_to_event)
      -> stage.select(...)              the seam for a sync-state layer: drop unchanged, add resends (no stage by default)
      -> _Feed.events(...)              plain event dicts to the delivery engine; mapping rejects counted here, never sent
      -> BluecoreHook.send_events(...)  validation, per-customer order, concurrency, retries
      -> _Feed.on_outcome(outcome)      counts, samples, and stage.record(mapped, outcome) for every event

A dry run replaces the last two steps by :func:`~airflow_provider_bluecore.events.prepare_event` and sends nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from airflow.providers.common.compat.sdk import AirflowFailException, BaseHook, BaseOperator

from airflow_provider_bluecore.delivery import SAMPLE_LIMIT, DeliveryReport, Outcome, rejects_beyond_limit, usable_distinct_id
from airflow_provider_bluecore.events import is_behavioural, prepare_event, redact
from airflow_provider_bluecore.exceptions import (
    BluecoreConfigError,
    BluecoreDeliveryError,
    BluecoreValidationError,
    Problem,
)
from airflow_provider_bluecore.mapping import MappedEvent, RowMapper, redact_event

if TYPE_CHECKING:
    from airflow_provider_bluecore.hooks.bluecore import BluecoreHook

__all__ = ["EventStage", "SqlToBluecoreOperator"]

#: How many redacted payloads a dry run shows in the log.
DRY_RUN_SAMPLES = 3


class EventStage(Protocol):
    """A step between mapping and sending; the sync-state layer plugs in here (see :meth:`SqlToBluecoreOperator.make_stage`).

    ``select`` receives the mapped events in source order and yields those to send, in the order to send them: it may drop
    events (unchanged since the last sync), add events (resends of earlier failures, typically first), or pass them through.
    Events the mapping rejected (``mapped.problems`` non-empty) should be passed through so they are counted and recorded.
    ``record`` is then called once per event that came out of ``select``, with its delivery
    :class:`~airflow_provider_bluecore.delivery.Outcome` (mapping rejects get ``status="rejected"``, ``index=-1`` and
    ``attempts=0``); it is not called by a dry run. ``summary`` adds counters to the run summary; ``close`` runs at the end of
    the run, also after an error.
    """

    def select(self, events: Iterator[MappedEvent]) -> Iterator[MappedEvent]:
        """The events to send, in order."""
        ...

    def record(self, mapped: MappedEvent, outcome: Outcome) -> None:
        """What became of one selected event."""
        ...

    def summary(self) -> dict[str, Any]:
        """Counters for the run summary (JSON-serialisable, no PII)."""
        ...

    def close(self) -> None:
        """Flush and release whatever the stage holds."""
        ...


class _Feed:
    """Feeds mapped events to the delivery engine as plain dicts, and routes each outcome back to its MappedEvent.

    Rejects of the mapping and of the engine's validation count together against ``max_rejected``; once it is crossed the
    feed stops reading (the events already handed over are still sent).
    """

    def __init__(self, max_rejected: float | None, stage: EventStage | None) -> None:
        self.max_rejected = max_rejected
        self.stage = stage
        self.pending: dict[int, MappedEvent] = {}
        self.index = 0
        self.seen = 0
        self.rejected = 0
        self.failed = 0
        self.delivered = 0
        self.would_send = 0
        self.stopped = False
        self.samples: list[dict[str, Any]] = []

    def events(self, stream: Iterator[MappedEvent]) -> Iterator[Any]:
        while not rejects_beyond_limit(self.max_rejected, self.rejected, self.seen, final=False):
            mapped = next(stream, None)
            if mapped is None:
                return
            self.seen += 1
            if mapped.problems:
                reasons = [str(p) for p in mapped.problems]
                self._finish(mapped, Outcome(-1, mapped.event, "rejected", reasons, usable_distinct_id(mapped.event), None, 0))
                continue
            self.pending[self.index] = mapped
            self.index += 1
            yield mapped.event
        self.stopped = True

    def on_outcome(self, outcome: Outcome) -> None:
        self._finish(self.pending.pop(outcome.index), outcome)

    def _finish(self, mapped: MappedEvent, outcome: Outcome) -> None:
        status = outcome.status
        if status == "delivered":
            self.delivered += 1
        else:
            if status == "rejected":
                self.rejected += 1
            else:
                self.failed += 1
            self.sample(mapped, status, outcome.reasons)
        if self.stage is not None:
            self.stage.record(mapped, outcome)

    def sample(self, mapped: MappedEvent, status: str, reasons: list[str]) -> None:
        if len(self.samples) < SAMPLE_LIMIT:
            key = usable_distinct_id(mapped.event)
            self.samples.append(
                {
                    "row": mapped.row,
                    "event": mapped.name,
                    "key": redact(key) if key is not None else None,
                    "status": status,
                    "reasons": reasons,
                }
            )

    def crossed(self, limit: float | None) -> bool:
        """True when ``limit`` was crossed while reading or by the final counts."""
        return self.stopped or rejects_beyond_limit(limit, self.rejected, self.seen, final=True)


def _single_statement(sql: Any) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise BluecoreConfigError("sql: must be one non-empty SELECT statement (a string, or a .sql file)")
    return sql.strip().rstrip(";").rstrip()


def _is_psycopg(connection: Any) -> bool:
    """True for a psycopg2 or psycopg (3) connection: PostgreSQL streams only through a named (server-side) cursor."""
    return type(connection).__module__.split(".")[0] in ("psycopg2", "psycopg")


def _as_tuples(chunk: Sequence[Any]) -> Sequence[Any]:
    """Rows as sequences in column order (dict-like rows of RealDictCursor / dict_row become tuples)."""
    if chunk and isinstance(chunk[0], Mapping):
        return [tuple(row.values()) for row in chunk]
    return chunk


class SqlToBluecoreOperator(BaseOperator):
    """Send the rows of a SQL query to Bluecore as events, streamed in bounded memory, mapped predictably.

    Each row becomes one event (``customer_patch`` by default) by the column conventions of
    :mod:`airflow_provider_bluecore.mapping`: ``distinct_id``, ``email``, ``search_term``, ``order_id``, ``total``,
    ``client``, ``device``, ``product_id`` / ``product_ids`` map to their fields, and for events that carry a customer every
    other column is a customer attribute. Consecutive rows of one ``order_id`` make one purchase. Configuration mistakes
    (invalid attribute names, unexpected columns, attributes outside the allowlist) stop the task before anything is sent.

    Returns a JSON summary to XCom: rows read, events built, sent, rejected (with a sample of redacted reasons), failed and
    duration. The task fails, after logging the summary and pushing it to XCom under the key ``summary``, when rejects exceed
    ``max_rejected`` (no retry: the same rows would be rejected again) or when any event failed to be delivered.

    :param sql: one SELECT statement, or a path to a ``.sql`` file (templated). Order purchases by ``order_id``.
    :param conn_id: the source connection; its hook must be a common-sql ``DbApiHook`` (SQLite, PostgreSQL, MySQL, Snowflake,
        BigQuery, ...). (templated)
    :param parameters: bind parameters of ``sql`` (a sequence or a mapping, in the driver's paramstyle), passed to the
        driver, never formatted into the SQL. (templated)
    :param event: the event name: a standard event or a lowercase custom one (default ``customer_patch``).
    :param mapping: ``{column: field path}`` overriding the conventions, e.g. ``{"cust_id": "distinct_id", "fname":
        "customer.first_name", "price": "products[].price", "internal": None}``.
    :param row_to_event: a callable ``row dict -> event dict | list of events | None`` taking full control (no ``mapping``).
    :param send_nulls: send NULL customer attributes and custom properties as JSON null (clearing them) instead of leaving
        them out.
    :param auto_identify: precede an event whose non-e-mail ``distinct_id`` comes with an ``email`` by an ``identify``
        linking them, once per id per run (as the Events API requires for every new non-e-mail id).
    :param customer_attributes: allowlist of customer attributes; any other attribute column fails the task before sending.
        None (default) allows every attribute; the attribute set is logged at the start of every run.
    :param bluecore_conn_id: the Bluecore connection. (templated)
    :param concurrency: requests in flight at once; default the connection's ``concurrency``.
    :param max_events_per_second: a rate limit; default the connection's.
    :param max_rejected: rejected rows/events tolerated: an int count (default 0) or a float fraction (0 < f < 1) of the
        events seen (checked once 100 were seen, and at the end). Once crossed, reading stops, the events already read are
        sent, and the task fails. None tolerates any number (they are still reported).
    :param max_event_age: behavioural events (everything but customer_patch, identify, optin, unsubscribe) carry no timestamp,
        so Bluecore records them as happening now. A run whose data interval ended longer ago than this (a ``timedelta`` or
        seconds; default 48 hours), or a backfill run, refuses to send them.
    :param allow_backfill: send behavioural events even in backfill runs and runs older than ``max_event_age``.
    :param dry_run: map and validate every row and send nothing; the summary says what would be sent and rejected, and the
        log shows a few redacted sample payloads.
    :param fetch_size: rows fetched per round trip (``cursor.fetchmany``).
    :param mode: what the sync state lets through (see ``docs/state-store.md``): ``changed`` sends a key only when its event
        differs from the last one delivered (default for ``customer_patch``, ``identify``, ``optin``, ``unsubscribe``);
        ``new`` only keys never delivered (default for ``purchase`` and when ``key_column`` is given); ``all`` sends every
        row without reading or writing any state. Every stateful run first resends the failures kept from earlier runs.
    :param state_conn_id: the connection of the database holding the sync state (PostgreSQL, MySQL, SQLite, ...). Default:
        an SQLite file ``bluecore_state.db`` under ``$AIRFLOW_HOME`` (or ``[bluecore] state_db``), fine on one machine; use
        a shared database once tasks run on several workers. (templated)
    :param sync_id: the identity of this sync's state (default ``<dag_id>.<task_id>``). Mapped instances share it and keep
        their failures apart by map index. (templated)
    :param key_column: a column identifying each source row, used as the state key of events other than customer and purchase
        events (which are keyed by ``distinct_id`` and ``order_id``); without it such events are keyed by their content.
    """

    template_fields: Sequence[str] = ("sql", "parameters", "conn_id", "bluecore_conn_id", "state_conn_id", "sync_id")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json"}
    ui_color = "#1f6feb"

    def __init__(
        self,
        *,
        sql: str,
        conn_id: str,
        parameters: Sequence[Any] | Mapping[str, Any] | None = None,
        event: str = "customer_patch",
        mapping: Mapping[str, str | None] | None = None,
        row_to_event: Callable[[dict[str, Any]], Any] | None = None,
        send_nulls: bool = False,
        auto_identify: bool = True,
        customer_attributes: Collection[str] | None = None,
        bluecore_conn_id: str = "bluecore_default",
        concurrency: int | None = None,
        max_events_per_second: float | None = None,
        max_rejected: int | float | None = 0,
        max_event_age: timedelta | float = timedelta(hours=48),
        allow_backfill: bool = False,
        dry_run: bool = False,
        fetch_size: int = 5_000,
        mode: str | None = None,
        state_conn_id: str | None = None,
        sync_id: str | None = None,
        key_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.conn_id = conn_id
        self.parameters = parameters
        self.event = event
        self.mapping = mapping
        self.row_to_event = row_to_event
        self.send_nulls = send_nulls
        self.auto_identify = auto_identify
        self.customer_attributes = customer_attributes
        self.bluecore_conn_id = bluecore_conn_id
        self.concurrency = concurrency
        self.max_events_per_second = max_events_per_second
        self.max_rejected = max_rejected
        self.max_event_age = max_event_age
        self.allow_backfill = allow_backfill
        # BaseOperator.dry_run() is a method (template rendering check), so the flag is stored under another name.
        self.is_dry_run = dry_run
        self.fetch_size = fetch_size
        self.mode = mode
        self.state_conn_id = state_conn_id
        self.sync_id = sync_id
        self.key_column = key_column

    # ---- connections (looked up lazily, once) --------------------------------------------------------------------------------

    @cached_property
    def source_hook(self) -> Any:
        """The common-sql ``DbApiHook`` of ``conn_id``."""
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = BaseHook.get_connection(self.conn_id).get_hook()
        if not isinstance(hook, DbApiHook):
            raise BluecoreConfigError(
                f"conn_id: the hook of connection {self.conn_id!r} is a {type(hook).__name__}, not a common-sql DbApiHook; "
                "use a SQL database connection (its provider must support common-sql)"
            )
        return hook

    @cached_property
    def bluecore_hook(self) -> BluecoreHook:
        """The hook of ``bluecore_conn_id``."""
        from airflow_provider_bluecore.hooks.bluecore import BluecoreHook

        return BluecoreHook(bluecore_conn_id=self.bluecore_conn_id)

    # ---- the seam for a sync-state layer -------------------------------------------------------------------------------------

    def make_stage(self, context: Any, mapper: RowMapper) -> EventStage | None:
        """The stage placed between mapping and sending (see :class:`EventStage`): the sync state, or None in mode ``all``."""
        from airflow_provider_bluecore.transfers.sync_state_support import make_sync_state_stage

        return make_sync_state_stage(self, context)

    # ---- running -------------------------------------------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            self._check_arguments()
            refusal = self.backfill_refusal(context)
            if refusal is not None and self.row_to_event is None and is_behavioural(self.event):
                raise BluecoreConfigError(self._refusal_message(self.event, refusal))
            with self._rows() as (columns, rows):
                mapper = self.make_mapper(columns)
                self._log_mapping(mapper)
                stream = mapper.map(rows)
                if refusal is not None:
                    stream = self._refuse_behavioural(stream, refusal)
                stage = self.make_stage(context, mapper)
                try:
                    if stage is not None:
                        stream = stage.select(stream)
                    # A dry run reads everything (to report every reject); the limit is applied to its final counts.
                    feed = _Feed(None if self.is_dry_run else self.max_rejected, None if self.is_dry_run else stage)
                    report = self._validate_only(feed, stream) if self.is_dry_run else self._send(feed, stream)
                finally:
                    if stage is not None:
                        stage.close()
        except BluecoreConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        summary = self._summary(mapper, feed, report, stage, time.monotonic() - started)
        self.log.info(
            "Bluecore sync%s: %d rows read, %d events built, %d %s, %d rejected, %d failed in %.1f s",
            " (dry run)" if self.is_dry_run else "",
            summary["rows_read"],
            summary["events_built"],
            summary["would_send"] if self.is_dry_run else summary["sent"],
            "would be sent" if self.is_dry_run else "sent",
            summary["rejected"],
            summary["failed"],
            summary["duration_s"],
        )
        self._raise_if_failed(context, feed, summary)
        return summary

    def _check_arguments(self) -> None:
        if not isinstance(self.fetch_size, int) or self.fetch_size < 1:
            raise BluecoreConfigError(f"fetch_size: must be a positive int, not {self.fetch_size!r}")
        limit = self.max_rejected
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, int | float)
            or (isinstance(limit, int) and limit < 0)
            or (isinstance(limit, float) and not 0 < limit < 1)
        ):
            raise BluecoreConfigError(f"max_rejected: an int count >= 0 or a float fraction between 0 and 1, not {limit!r}")
        self._max_age()

    def _max_age(self) -> timedelta:
        age = self.max_event_age
        if isinstance(age, int | float) and not isinstance(age, bool):
            age = timedelta(seconds=age)
        if not isinstance(age, timedelta) or age <= timedelta(0):
            raise BluecoreConfigError(f"max_event_age: a positive timedelta or number of seconds, not {self.max_event_age!r}")
        return age

    def make_mapper(self, columns: Sequence[str]) -> RowMapper:
        """The :class:`~airflow_provider_bluecore.mapping.RowMapper` for the query's columns (raises on a bad mapping)."""
        return RowMapper(
            columns,
            event=self.event,
            mapping=self.mapping,
            row_to_event=self.row_to_event,
            send_nulls=self.send_nulls,
            auto_identify=self.auto_identify,
            customer_attributes=self.customer_attributes,
            key_column=self.key_column,
        )

    def _log_mapping(self, mapper: RowMapper) -> None:
        self.log.info("Mapping %s", mapper.describe())
        if mapper.row_to_event is None and mapper.carries_customer:
            self.log.info(
                "Customer attributes this sync sends (created permanently in Bluecore if new): %s",
                ", ".join(mapper.attributes) or "none",
            )

    # ---- the backfill guard --------------------------------------------------------------------------------------------------

    def backfill_refusal(self, context: Any) -> str | None:
        """Why behavioural events must not be sent in this run (a backfill, or data older than ``max_event_age``), or None."""
        if self.allow_backfill:
            return None
        dag_run = context.get("dag_run") if isinstance(context, Mapping) else None
        run_type = getattr(dag_run, "run_type", None)
        if getattr(run_type, "value", run_type) == "backfill":
            return "this is a backfill run"
        end = context.get("data_interval_end") if isinstance(context, Mapping) else None
        if isinstance(end, datetime):
            if end.tzinfo is None:
                end = end.replace(tzinfo=timezone.utc)
            age = datetime.now(timezone.utc) - end
            max_age = self._max_age()
            if age > max_age:
                hours = age.total_seconds() / 3600
                return f"the run's data interval ended {hours:.0f} h ago, more than max_event_age ({max_age})"
        return None

    @staticmethod
    def _refusal_message(event: str, why: str) -> str:
        return (
            f"Refusing to send {event} events: {why}. Behavioural events carry no timestamp, so Bluecore would record them as "
            "happening now and could fire live campaigns on old behaviour. Set allow_backfill=True to send them anyway "
            "(customer_patch, identify, optin and unsubscribe are always allowed)."
        )

    def _refuse_behavioural(self, stream: Iterator[MappedEvent], why: str) -> Iterator[MappedEvent]:
        for mapped in stream:
            name = mapped.name
            if not mapped.problems and name is not None and is_behavioural(name):
                mapped.problems = [Problem("event", self._refusal_message(name, why))]
            yield mapped

    # ---- the source ----------------------------------------------------------------------------------------------------------

    @contextmanager
    def _rows(self) -> Iterator[tuple[list[str], Iterator[Sequence[Any]]]]:
        """The query's column names and its rows, fetched ``fetch_size`` at a time."""
        sql = _single_statement(self.sql)
        connection = self.source_hook.get_conn()
        cursor = None
        try:
            if _is_psycopg(connection):
                # psycopg pulls the whole result at execute() unless the cursor is named (DECLARE ... CURSOR).
                if getattr(connection, "autocommit", False):
                    connection.autocommit = False
                cursor = connection.cursor(name=f"bluecore_{uuid.uuid4().hex[:16]}")
                cursor.itersize = self.fetch_size
                streaming = "server-side cursor"
            else:
                cursor = connection.cursor()
                streaming = "cursor"
            if self.parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, self.parameters)
            first = _as_tuples(cursor.fetchmany(self.fetch_size))
            if not cursor.description:
                raise BluecoreConfigError("sql: the statement returned no result set; it must be a SELECT")
            columns = [str(d[0]) for d in cursor.description]
            self.log.info("Reading %d columns through a %s, %d rows per fetch", len(columns), streaming, self.fetch_size)
            yield columns, self._iter_rows(cursor, first)
        finally:
            if cursor is not None:
                try:
                    cursor.close()
                except Exception:  # a failed query leaves some drivers' cursors unclosable; the connection closes below
                    self.log.debug("Closing the source cursor failed", exc_info=True)
            connection.close()

    def _iter_rows(self, cursor: Any, first: Sequence[Any]) -> Iterator[Sequence[Any]]:
        chunk = first
        size = self.fetch_size
        while chunk:
            yield from chunk
            chunk = _as_tuples(cursor.fetchmany(size))

    # ---- sending / validating ------------------------------------------------------------------------------------------------

    def _send(self, feed: _Feed, stream: Iterator[MappedEvent]) -> DeliveryReport:
        return self.bluecore_hook.send_events(
            feed.events(stream),
            concurrency=self.concurrency,
            max_events_per_second=self.max_events_per_second,
            max_rejected=None,  # counted by the feed, together with the mapping's own rejects
            on_outcome=feed.on_outcome,
        )

    def _validate_only(self, feed: _Feed, stream: Iterator[MappedEvent]) -> DeliveryReport:
        """A dry run: every event through the Events API rules, nothing sent."""
        defaults = self.bluecore_hook.config.defaults
        started = time.monotonic()
        for index, event in enumerate(feed.events(stream)):
            try:
                prepared = prepare_event(event, defaults)
            except BluecoreValidationError as exc:
                feed.on_outcome(Outcome(index, event, "rejected", [str(p) for p in exc.problems], None, None, 0))
                continue
            feed.pending.pop(index)
            feed.would_send += 1
            if feed.would_send <= DRY_RUN_SAMPLES:
                sample = json.dumps(redact_event(json.loads(prepared.body)))
                self.log.info("Dry run sample payload %d (redacted): %s", feed.would_send, sample)
        return DeliveryReport(seen=feed.index, duration_s=round(time.monotonic() - started, 3))

    # ---- reporting -----------------------------------------------------------------------------------------------------------

    def _summary(
        self, mapper: RowMapper, feed: _Feed, report: DeliveryReport, stage: EventStage | None, duration: float
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "dry_run": self.is_dry_run,
            "event": self.event,
            "rows_read": mapper.rows_read,
            "rows_skipped": mapper.rows_skipped,
            "events_built": mapper.events_built,
            "identifies_added": mapper.identifies_added,
            "sent": report.sent,
            "rejected": feed.rejected,
            "failed": feed.failed,
            "retried": dict(report.retried),
            "stopped_early": feed.stopped,
            "duration_s": round(duration, 3),
            "events_per_second": report.events_per_second,
            "peak_concurrency": report.peak_concurrency,
            "samples": feed.samples,
        }
        if self.is_dry_run:
            summary["would_send"] = feed.would_send
        if stage is not None:
            summary.update(stage.summary())
        return summary

    def _raise_if_failed(self, context: Any, feed: _Feed, summary: dict[str, Any]) -> None:
        crossed = feed.crossed(self.max_rejected)
        if not crossed and not summary["failed"]:
            return
        ti = context.get("ti") if isinstance(context, Mapping) else None
        if ti is not None:
            ti.xcom_push(key="summary", value=summary)
        reasons = "; ".join(f"row {s['row']} ({s['key'] or 'no key'}): {', '.join(s['reasons'][:3])}" for s in feed.samples[:5])
        if summary["failed"]:
            raise BluecoreDeliveryError(
                f"{summary['failed']} events could not be delivered ({summary['sent']} sent, {summary['rejected']} rejected); "
                f"see the summary in XCom 'summary'. First reasons: {reasons}",
                report=summary,
            )
        limit = f"{self.max_rejected:.0%} of events" if isinstance(self.max_rejected, float) else f"{self.max_rejected}"
        outcome = (
            f"{summary['would_send']} valid events would have been sent (dry run)"
            if self.is_dry_run
            else f"{summary['sent']} valid events were sent"
        )
        raise AirflowFailException(
            f"{summary['rejected']} events rejected, beyond max_rejected ({limit})"
            f"{'; reading stopped there' if feed.stopped else ''}. {outcome}. Fix the query or the mapping, or raise "
            f"max_rejected. First reasons: {reasons}"
        )

    # ---- lineage -------------------------------------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage facets: the query's tables in (when the database supports it), the Bluecore namespace out.

        Returns None when the OpenLineage provider (the ``openlineage`` extra) is not installed.
        """
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset, SQLJobFacet
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        inputs: list[Any] = []
        run_facets: dict[str, Any] = {}
        job_facets: dict[str, Any] = {"sql": SQLJobFacet(query=str(self.sql))}
        parsed = self._openlineage_from_sql()
        if parsed is not None:
            inputs = list(parsed.inputs)
            run_facets = dict(parsed.run_facets)
            job_facets.update(parsed.job_facets)
        outputs = (
            [] if self.is_dry_run else [Dataset(namespace=f"bluecore://{self.bluecore_hook.config.namespace}", name=self.event)]
        )
        return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets, job_facets=job_facets)

    def _openlineage_from_sql(self) -> Any:
        """The source tables, parsed from the SQL by the OpenLineage SQL parser for databases whose hook describes them."""
        try:
            from airflow.providers.openlineage.sqlparser import SQLParser
        except ImportError:
            return None
        hook = self.source_hook
        try:
            connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
            database_info = hook.get_openlineage_database_info(connection)
            if database_info is None:
                return None
            parser = SQLParser(
                dialect=hook.get_openlineage_database_dialect(connection),
                default_schema=hook.get_openlineage_default_schema(),
            )
            return parser.generate_openlineage_metadata_from_sql(
                sql=str(self.sql),
                hook=hook,
                database_info=database_info,
                sqlalchemy_engine=hook.get_sqlalchemy_engine(),
                use_connection=False,
            )
        except Exception as exc:  # lineage is best effort: it must never fail a sync that already ran
            self.log.info("OpenLineage: no source tables (%s: %s)", type(hook).__name__, type(exc).__name__)
            return None
