"""SqlFreshnessSensor: wait until the source has loaded the run's data before a sync sends it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.triggers.freshness import (
    Comparable,
    SqlFreshnessTrigger,
    check_freshness,
    fetch_value,
    parse_target,
    show,
    timeout_message,
)

__all__ = ["SqlFreshnessSensor"]


class SqlFreshnessSensor(BaseSensorOperator):
    """Waits until a query's value (e.g. ``SELECT max(updated_at) FROM orders``) reaches the run's ``data_interval_end``.

    Put it upstream of a sync so a run never sends a half-loaded interval. Values are compared as described in
    :mod:`airflow_provider_bluecore.triggers.freshness`: datetimes (a naive one is taken as UTC), dates (a date counts as
    the end of that day), ISO 8601 strings, or numbers against a numeric target. NULL is never fresh.

    Works in ``mode="poke"`` and ``mode="reschedule"`` (frees the worker slot between pokes), and with ``deferrable=True``
    (polls in a trigger on the triggerer, which needs this provider and the database driver installed). On timeout the task
    fails with the value reached and the target; the value reached is returned to XCom on success.

    :param conn_id: a SQL connection whose hook is a common-sql ``DbApiHook`` (SQLite, PostgreSQL, Snowflake, ...).
        (templated)
    :param sql: a query returning one value in its first column; a ``.sql`` file is read. (templated)
    :param target: what the value must reach: a datetime, a date, an ISO 8601 string or a number; default the run's
        ``data_interval_end``. (templated)
    :param parameters: bind parameters of the query, passed to the driver. (templated)
    :param deferrable: poll in a trigger instead of a worker slot; default ``[operators] default_deferrable``.
    :param kwargs: the usual sensor arguments: ``poke_interval``, ``timeout``, ``mode``, ``soft_fail``, ...
    """

    template_fields: Sequence[str] = ("conn_id", "sql", "target", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json"}
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        conn_id: str,
        sql: str,
        target: Any = None,
        parameters: Mapping[str, Any] | list[Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.sql = sql
        self.target = target
        self.parameters = parameters
        self.deferrable = deferrable
        self._last_value: str | None = None

    def _target(self, context: Mapping[str, Any]) -> Comparable:
        raw = self.target if self.target not in (None, "") else context.get("data_interval_end")
        if raw is None:
            raise BluecoreConfigError("target: the run has no data_interval_end (a manual run without one); give target=")
        return parse_target(raw)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        target = self._target(context)
        check = check_freshness(fetch_value(self.conn_id, self.sql, self.parameters), target)
        self._last_value = check.value
        for note in check.notes:
            self.log.info("Reading the value: %s", note)
        if check.fresh:
            self.log.info("Source is fresh: %s reached %s", check.value, show(target))
            return PokeReturnValue(is_done=True, xcom_value=check.value)
        self.log.info("Source not fresh yet: %s, target %s", check.value or "NULL", show(target))
        return False

    def execute(self, context: Any) -> Any:
        if self.deferrable:
            return self._defer_unless_fresh(context)
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            target = show(self._target(context))
            raise AirflowSensorTimeout(timeout_message(self.conn_id, self._last_value, target, self.timeout)) from exc

    def _defer_unless_fresh(self, context: Any) -> Any:
        done = self.poke(context)
        if isinstance(done, PokeReturnValue):
            return done.xcom_value
        trigger = SqlFreshnessTrigger(
            conn_id=self.conn_id,
            sql=self.sql,
            target=show(self._target(context)),
            parameters=self.parameters,
            poll_interval=float(self.poke_interval),
            deadline=time.time() + self.timeout,
        )
        # The trigger gives up at the deadline with the value reached; the deferral timeout is only a backstop.
        backstop = timedelta(seconds=self.timeout + float(self.poke_interval) + 60)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=backstop)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return the value reached, or fail naming it and the target."""
        if event.get("status") == "fresh":
            self.log.info("Source is fresh: %s reached %s", event.get("value"), event.get("target"))
            return event.get("value")
        if event.get("status") == "error":
            raise BluecoreConfigError(str(event.get("message")))
        message = timeout_message(self.conn_id, event.get("value"), str(event.get("target")), self.timeout)
        if self.soft_fail:
            raise AirflowSkipException(message)
        raise AirflowSensorTimeout(message)
