"""BluecoreEventsOperator: send a batch of ready-made events (a list, JSON, or an upstream task's output) to Bluecore."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_bluecore.exceptions import BluecoreConfigError, BluecoreDeliveryError, BluecoreValidationError

if TYPE_CHECKING:
    from airflow_provider_bluecore.delivery import DeliveryReport
    from airflow_provider_bluecore.hooks.bluecore import BluecoreHook

__all__ = ["BluecoreEventsOperator"]


class BluecoreEventsOperator(BaseOperator):
    """Send events to Bluecore's Events API through :meth:`BluecoreHook.send_events` and return the delivery report.

    Every event is validated before anything is sent for it; valid events go out concurrently, in per-customer order, with
    retries and rate limiting (see :mod:`airflow_provider_bluecore.delivery`). The task returns
    :meth:`DeliveryReport.as_dict` (counts, retries, rate and a sample of reasons with redacted keys) to XCom.

    The task fails, after logging the report and pushing it to XCom under the key ``summary``, when:

    * events were rejected beyond ``max_rejected`` (or any was rejected when ``max_rejected`` is None):
      ``AirflowFailException``, no retry, because the data must be fixed and a retry would resend the delivered events;
    * events could not be delivered and others were: ``AirflowFailException`` too, since this operator keeps no state and a
      retry would resend the delivered events (duplicate behaviours fire campaigns twice). Resend the failures deliberately,
      or use ``SqlToBluecoreOperator``, whose sync state resends only what failed;
    * nothing could be delivered (for example the API was down): :class:`BluecoreDeliveryError`, an ordinary failure, so the
      task's ``retries`` apply; nothing would be sent twice.

    Works with dynamic task mapping: ``BluecoreEventsOperator.partial(task_id=...).expand(events=batches)`` sends one batch
    (a list of events, or a single event dict) per mapped task.

    :param events: the events to send (templated): a list of ``{"event": ..., "properties": {...}}`` dicts, a single such
        dict, a JSON string of either (a Python-literal string, as rendered from ``{{ ti.xcom_pull(...) }}``, also works),
        or an upstream task's output (``events=build.output``).
    :param bluecore_conn_id: the `bluecore` connection (templated).
    :param concurrency: requests in flight at once; default the connection's ``concurrency`` extra (16).
    :param max_events_per_second: a rate limit across all workers; default the connection's ``max_events_per_second``.
    :param max_rejected: rejected events tolerated: an int count, or a float fraction (0 < f < 1) of the events seen. Once
        crossed, reading stops (events already read are still sent) and the task fails. None (default): every valid event is
        sent, and the task fails at the end if any event was rejected.
    """

    template_fields: Sequence[str] = ("events", "bluecore_conn_id")
    template_fields_renderers = {"events": "json"}
    ui_color = "#dbeafe"

    def __init__(
        self,
        *,
        events: Any,
        bluecore_conn_id: str = "bluecore_default",
        concurrency: int | None = None,
        max_events_per_second: float | None = None,
        max_rejected: int | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.events = events
        self.bluecore_conn_id = bluecore_conn_id
        self.concurrency = concurrency
        self.max_events_per_second = max_events_per_second
        self.max_rejected = max_rejected

    @cached_property
    def hook(self) -> BluecoreHook:
        """The hook for ``bluecore_conn_id`` (created on first use, after templates were rendered)."""
        from airflow_provider_bluecore.hooks.bluecore import BluecoreHook

        return BluecoreHook(bluecore_conn_id=self.bluecore_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            events = _as_events(self.events)
            report = self.hook.send_events(
                events,
                concurrency=self.concurrency,
                max_events_per_second=self.max_events_per_second,
                max_rejected=self.max_rejected,
            )
        except BluecoreValidationError as exc:
            if exc.report is None:
                raise AirflowFailException(str(exc)) from exc
            self._publish(context, exc.report)
            raise AirflowFailException(f"{exc} The report is in XCom 'summary'.") from exc
        except BluecoreConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            self.hook.close()
        summary = report.as_dict()
        if report.failed:
            self._publish(context, report)
            message = (
                f"{report.failed} of {report.seen} events could not be delivered ({report.sent} delivered, "
                f"{report.rejected} rejected). First reasons: {_reasons(report, 'failed')}. The report is in XCom 'summary'."
            )
            if report.sent == 0:
                raise BluecoreDeliveryError(f"{message} Nothing was delivered, so a task retry sends nothing twice.", report)
            raise AirflowFailException(
                f"{message} Not retrying: this operator keeps no state, so a retry would resend the {report.sent} delivered "
                "events. Resend the failed ones deliberately, or use SqlToBluecoreOperator with sync state."
            )
        if report.rejected and self.max_rejected is None:
            self._publish(context, report)
            raise AirflowFailException(
                f"{report.rejected} of {report.seen} events were rejected (never sent); the {report.sent} valid ones were "
                f"delivered. First reasons: {_reasons(report, 'rejected')}. Fix the events, or set max_rejected to tolerate "
                "some. The report is in XCom 'summary'."
            )
        return summary

    def _publish(self, context: Any, report: DeliveryReport) -> None:
        """Log the report and push it to XCom before the task fails (a failed task returns nothing)."""
        self.log.error("%s", report.summary_line())
        for sample in report.samples[:10]:
            self.log.error(
                "  event %d (key %s) %s: %s", sample["index"], sample["key"], sample["status"], "; ".join(sample["reasons"])
            )
        ti = context.get("ti") if isinstance(context, Mapping) else None
        if ti is not None:
            ti.xcom_push(key="summary", value=report.as_dict())


def _reasons(report: DeliveryReport, status: str, limit: int = 3) -> str:
    shown = [s for s in report.samples if s["status"] == status][:limit]
    return "; ".join(f"event {s['index']} ({s['key'] or 'no key'}): {', '.join(s['reasons'][:2])}" for s in shown) or "none kept"


def _as_events(value: Any) -> Iterable[Any]:
    """The ``events`` argument as an iterable of events, or a config error naming the argument and what it accepts."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)  # what Jinja renders from a list of dicts: single quotes, True/None
            except (ValueError, SyntaxError):
                raise BluecoreConfigError(
                    "events: a string must be JSON (a list of events or one event); it does not parse. To pass an upstream "
                    "task's result use events=<task>.output"
                ) from None
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable):
        raise BluecoreConfigError(
            f"events: must be a list of event dicts, one event dict, or a JSON string of them, not {type(value).__name__}"
        )
    return value
