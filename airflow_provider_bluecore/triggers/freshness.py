"""The trigger behind ``SqlFreshnessSensor(deferrable=True)``, and the freshness rules it shares with the sensor.

A freshness check runs a query returning one value (``SELECT max(updated_at) FROM orders``) and compares it with a target
(by default the run's ``data_interval_end``). The rules, in one place for the sensor and the trigger:

* a ``datetime`` with a time zone is compared as is; a naive one is taken as UTC (the log says so);
* a ``date`` value (or an ISO date string such as ``2024-01-01``) means that whole day is loaded: it compares as the
  midnight UTC that ends it, so ``max(load_date) = 2024-01-01`` satisfies a daily run whose interval ends at
  ``2024-01-02T00:00Z``; a date *target* is the midnight UTC that starts it;
* a string is parsed as ISO 8601 (``2024-01-01 12:00:00``, ``...+02:00``, ``...Z``);
* numbers (int, float, Decimal) are compared with a numeric target, e.g. an epoch or a batch id;
* NULL (an empty table) is never fresh.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_provider_bluecore.exceptions import BluecoreConfigError

__all__ = [
    "FreshnessCheck",
    "SqlFreshnessTrigger",
    "check_freshness",
    "fetch_value",
    "parse_target",
    "show",
    "timeout_message",
]

Comparable = dt.datetime | Decimal


class FreshnessCheck:
    """The outcome of one comparison.

    :param fresh: whether the value reached the target.
    :param value: the value as shown to people (ISO 8601 or the number), or None when the query returned NULL.
    :param notes: how the value was read (naive datetime taken as UTC, date taken as the end of the day).
    """

    __slots__ = ("fresh", "notes", "value")

    def __init__(self, fresh: bool, value: str | None, notes: tuple[str, ...] = ()) -> None:
        self.fresh = fresh
        self.value = value
        self.notes = notes


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def _as_datetime(value: Any, notes: list[str]) -> dt.datetime | None:
    """A timezone-aware datetime, or None when ``value`` is not a date, a datetime or an ISO string."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            notes.append("a naive datetime is taken as UTC")
            return value.replace(tzinfo=dt.timezone.utc)
        return value
    if isinstance(value, dt.date):
        notes.append("a date counts as the end of that day (midnight UTC)")
        return dt.datetime.combine(value + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    return None


def parse_target(target: Any) -> Comparable:
    """The comparison target: a datetime (naive means UTC), a date (its midnight UTC), an ISO string, or a number (also as
    text).

    Raises :class:`BluecoreConfigError` naming ``target`` when it is none of these.
    """
    number = _number(target)
    if number is not None:
        return number
    if isinstance(target, str):
        text = target.strip()
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return Decimal(text)
        try:
            target = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            target = None
    if isinstance(target, dt.date) and not isinstance(target, dt.datetime):
        return dt.datetime.combine(target, dt.time(), tzinfo=dt.timezone.utc)  # a target date is the start of that day
    parsed = _as_datetime(target, [])
    if parsed is not None:
        return parsed
    raise BluecoreConfigError(f"target: must be a datetime, a date, an ISO 8601 string or a number, got {target!r}")


def show(value: Comparable) -> str:
    """A target or value as people read it: ISO 8601 for datetimes, the plain number otherwise."""
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def check_freshness(value: Any, target: Comparable) -> FreshnessCheck:
    """Whether ``value`` (what the query returned) has reached ``target`` (from :func:`parse_target`).

    Raises :class:`BluecoreConfigError` when the value cannot be compared with the target (a number against a datetime).
    """
    if value is None:
        return FreshnessCheck(False, None)
    notes: list[str] = []
    if isinstance(target, Decimal):
        number = _number(value)
        if number is None and isinstance(value, str):
            try:
                number = Decimal(value.strip())
            except ArithmeticError:
                number = None
        if number is None:
            raise BluecoreConfigError(
                f"sql: returned a {type(value).__name__} while the target is a number; return a number or give a datetime target"
            )
        return FreshnessCheck(number >= target, str(value))
    when = _as_datetime(value, notes)
    if when is None:
        raise BluecoreConfigError(
            f"sql: returned a {type(value).__name__} ({str(value)[:40]!r}) that is not a datetime, a date or an ISO 8601 "
            "string, so it cannot be compared with a datetime target; cast it in the query or give a numeric target"
        )
    return FreshnessCheck(when >= target, when.isoformat(), tuple(notes))


def fetch_value(conn_id: str, sql: str, parameters: Mapping[str, Any] | list[Any] | None = None) -> Any:
    """The first column of the first row of ``sql`` on the connection ``conn_id`` (a common-sql ``DbApiHook``)."""
    hook = BaseHook.get_connection(conn_id).get_hook()
    if not hasattr(hook, "get_first"):
        raise BluecoreConfigError(f"conn_id: {conn_id!r} is not a SQL connection (its hook has no get_first)")
    row = hook.get_first(sql, parameters)
    return row[0] if row else None


def timeout_message(conn_id: str, value: str | None, target: str, waited: float) -> str:
    """The failure message of a timed-out freshness check, naming the value reached and the target."""
    reached = "the query returned NULL (no rows yet)" if value is None else f"the value reached {value}"
    return (
        f"Source on {conn_id!r} is not fresh after {waited:.0f} s: {reached}, the target is {target}. "
        "Check the load upstream, or raise the sensor's timeout."
    )


class SqlFreshnessTrigger(BaseTrigger):
    """Polls a SQL query on the triggerer until its value reaches the target, or the deadline passes.

    Fires one event: ``{"status": "fresh" | "timeout", "value": ..., "target": ...}`` (the value as :func:`show` renders
    it, None for NULL), or ``{"status": "error", "message": ...}`` when the value cannot be compared with the target.

    :param conn_id: a SQL connection (common-sql ``DbApiHook``).
    :param sql: a query returning one value.
    :param target: the target, as :func:`show` renders it (ISO 8601 or a number as text).
    :param parameters: bind parameters of the query.
    :param poll_interval: seconds between polls.
    :param deadline: a Unix time after which the trigger gives up, or None to poll forever.
    """

    def __init__(
        self,
        conn_id: str,
        sql: str,
        target: str,
        parameters: Mapping[str, Any] | list[Any] | None = None,
        poll_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.sql = sql
        self.target = target
        self.parameters = parameters
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "sql": self.sql,
                "target": self.target,
                "parameters": self.parameters,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        target = parse_target(self.target)
        while True:
            try:
                value = await sync_to_async(fetch_value)(self.conn_id, self.sql, self.parameters)
                check = check_freshness(value, target)
            except BluecoreConfigError as exc:
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            if check.fresh:
                self.log.info("Source on %s is fresh: %s >= %s", self.conn_id, check.value, self.target)
                yield TriggerEvent({"status": "fresh", "value": check.value, "target": self.target})
                return
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                yield TriggerEvent({"status": "timeout", "value": check.value, "target": self.target})
                return
            self.log.info("Source on %s not fresh yet: %s < %s", self.conn_id, check.value, self.target)
            wait = self.poll_interval if self.deadline is None else min(self.poll_interval, max(self.deadline - now, 0))
            await asyncio.sleep(wait)
