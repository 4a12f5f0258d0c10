"""BluecoreHook: the `bluecore` connection type and single-event delivery to Bluecore's Events API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_bluecore import __version__
from airflow_provider_bluecore.config import EXTRA_FIELDS, HIDDEN_FIELDS, PLACEHOLDERS, RELABELING, BluecoreConfig
from airflow_provider_bluecore.events import prepare_event, redact, redact_emails
from airflow_provider_bluecore.exceptions import BluecoreApiError, BluecoreConfigError
from airflow_provider_bluecore.retry import is_retryable_status

if TYPE_CHECKING:
    from airflow_provider_bluecore.delivery import DeliveryReport, Outcome

__all__ = ["USER_AGENT", "BluecoreHook"]

#: The ``User-Agent`` of every request this provider makes.
USER_AGENT = f"airflow-provider-bluecore/{__version__}"

# Network failures worth a retry: refused/reset/dropped connections (ConnectionError, which includes ConnectTimeout and TLS
# errors), read timeouts, and answers cut off mid-body.
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
#: test_connection() never waits longer than this per phase, whatever the connection's timeouts.
TEST_CONNECTION_TIMEOUT = 5.0


_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_TLS_ERROR = re.compile(r"\[SSL: [A-Z_]+\] (.+?)\.? \(_ssl")


def _unreachable_reason(exc: requests.RequestException, timeouts: tuple[float, float]) -> str:
    """Why a request got no answer, in a few words; urllib3's "Max retries exceeded ..." wrapper would mislead in the UI."""
    if isinstance(exc, requests.Timeout):
        return f"no answer in time (connect timeout {timeouts[0]:g} s, read timeout {timeouts[1]:g} s)"
    text = str(exc)
    tls = _TLS_ERROR.search(text)
    if tls:
        return f"TLS error: {tls.group(1).strip()}"
    os_error = _OS_ERROR.search(text)
    return os_error.group(1).strip() if os_error else text[:300]


def _excerpt(text: str, limit: int = 200) -> str:
    """At most ``limit`` characters of an answer body, with e-mail addresses redacted."""
    return redact_emails(text[:limit].strip())


class BluecoreHook(BaseHook):
    """Talks to Bluecore's Events API through a `bluecore` connection.

    Nothing happens in ``__init__``: the connection is read on first use of :attr:`config`, the HTTP session is opened on first
    use of :attr:`session`. Use the hook as a context manager (or call :meth:`close`) to release the pooled connections.

    :param bluecore_conn_id: the `bluecore` connection: ``login`` is the namespace, ``host`` the API base URL (default
        ``https://api.bluecore.app``), ``port`` optional (joined to the host), extras as in
        :data:`airflow_provider_bluecore.config.EXTRA_FIELDS`.
    """

    conn_name_attr = "bluecore_conn_id"
    default_conn_name = "bluecore_default"
    conn_type = "bluecore"
    hook_name = "Bluecore"

    def __init__(self, bluecore_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bluecore_conn_id = bluecore_conn_id

    @cached_property
    def config(self) -> BluecoreConfig:
        """The connection, parsed strictly. Raises :class:`BluecoreConfigError` naming the connection, field and rule."""
        conn = self.get_connection(self.bluecore_conn_id)
        if conn.conn_type and conn.conn_type != self.conn_type:
            raise BluecoreConfigError(
                f"connection {self.bluecore_conn_id!r}: conn_type must be 'bluecore', got {conn.conn_type!r}"
            )
        try:
            return BluecoreConfig.from_connection(conn.login, conn.host, conn.extra, port=conn.port)
        except BluecoreConfigError as exc:
            raise BluecoreConfigError(f"connection {self.bluecore_conn_id!r}: {exc}") from None

    @cached_property
    def session(self) -> requests.Session:
        """One pooled session per hook, sending JSON with this provider's ``User-Agent``."""
        session = requests.Session()
        session.headers.update({"User-Agent": USER_AGENT, "Content-Type": "application/json", "Accept": "application/json"})
        return session

    def get_conn(self) -> requests.Session:
        """The hook's pooled :class:`requests.Session`."""
        return self.session

    def send_event(self, event: Mapping[str, Any]) -> None:
        """Validate one event, fill in token/client/device, and POST it; return once Bluecore answered 2xx.

        Connection errors, timeouts, 408, 429 and 5xx (but 501/505) are retried up to ``max_retries`` times with full-jitter
        exponential backoff, honouring ``Retry-After``; each retry is logged at WARNING with its reason. Redirects are not
        followed (a redirected POST would silently become a GET).

        :param event: ``{"event": name, "properties": {...}}``.
        :raises BluecoreValidationError: the event breaks the Events API rules (every problem listed); nothing was sent.
        :raises BluecoreApiError: Bluecore answered a status that is not retried, or retries ran out.
        """
        config = self.config
        prepared = prepare_event(event, config.defaults)
        policy = config.retry_policy
        timeouts = (config.connect_timeout, config.timeout)
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            retry_after: str | None = None
            body = ""
            try:
                response = self.session.post(config.endpoint_url, data=prepared.body, timeout=timeouts, allow_redirects=False)
            except _TRANSIENT as exc:
                reason = type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self.log.debug(
                        "Bluecore accepted %s event for %s (HTTP %d)", prepared.name, redact(prepared.distinct_id), status
                    )
                    return
                reason = f"HTTP {status}"
                retry_after = response.headers.get("Retry-After")
                body = response.text
            if not policy.should_retry(attempt, status):
                raise self._api_error(
                    prepared.name, status, reason, body, attempt, exhausted=status is None or is_retryable_status(status)
                )
            wait = policy.delay(attempt, retry_after)
            self.log.warning(
                "Bluecore %s for %s event (%s); retry %d/%d in %.2f s",
                reason,
                prepared.name,
                redact(prepared.distinct_id),
                attempt,
                policy.max_retries,
                wait,
            )
            time.sleep(wait)

    @staticmethod
    def _api_error(name: str, status: int | None, reason: str, body: str, attempts: int, *, exhausted: bool) -> BluecoreApiError:
        excerpt = _excerpt(body)
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if status is None:
            message = f"Bluecore did not answer the {name} event after {tries} ({reason})"
        elif exhausted:
            message = f"Bluecore answered HTTP {status} to the {name} event; gave up after {tries}"
        else:
            message = f"Bluecore rejected the {name} event with HTTP {status} (not retried; {tries})"
        if excerpt:
            message += f": {excerpt}"
        return BluecoreApiError(message, status=status, body_excerpt=excerpt, attempts=attempts)

    def send_events(
        self,
        events: Iterable[Any],
        *,
        concurrency: int | None = None,
        max_events_per_second: float | None = None,
        max_rejected: int | float | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> DeliveryReport:
        """Send many events concurrently with :func:`airflow_provider_bluecore.delivery.deliver` and this connection's settings.

        :param events: any iterable of events, read lazily.
        :param concurrency: requests in flight at once; default the connection's ``concurrency``.
        :param max_events_per_second: a rate limit; default the connection's ``max_events_per_second``.
        :param max_rejected: rejected events tolerated (int count or float fraction); None tolerates any number.
        :param on_outcome: called once per input event with its outcome.
        :return: the delivery report (counts, retries, samples; no payloads).
        """
        from airflow_provider_bluecore.delivery import deliver

        config = self.config
        return deliver(
            events,
            url=config.endpoint_url,
            defaults=config.defaults,
            retry=config.retry_policy,
            user_agent=USER_AGENT,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            concurrency=config.concurrency if concurrency is None else concurrency,
            max_events_per_second=config.max_events_per_second if max_events_per_second is None else max_events_per_second,
            max_rejected=max_rejected,
            on_outcome=on_outcome,
        )

    def test_connection(self) -> tuple[bool, str]:
        """Check the configuration and that the endpoint answers, without sending an event.

        A ``HEAD`` request goes to the endpoint with short timeouts: any HTTP answer (even 404 or 405) proves it is reachable;
        DNS, TLS and connection failures and timeouts do not.
        """
        try:
            config = self.config
        except Exception as exc:  # the UI shows the message; a missing connection or bad config both land here
            return False, f"Invalid Bluecore connection: {exc}"
        timeouts = (min(config.connect_timeout, TEST_CONNECTION_TIMEOUT), min(config.timeout, TEST_CONNECTION_TIMEOUT))
        try:
            response = self.session.head(config.endpoint_url, timeout=timeouts, allow_redirects=False)
        except requests.RequestException as exc:
            return False, f"Cannot reach {config.endpoint_url}: {_unreachable_reason(exc, timeouts)} ({type(exc).__name__})"
        return True, (
            f"{config.endpoint_url} is reachable: it answered HTTP {response.status_code} to a HEAD request "
            f"(namespace {config.namespace!r}). No event was sent."
        )

    def close(self) -> None:
        """Close the pooled HTTP connections (a later request opens a new session)."""
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    def __enter__(self) -> BluecoreHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields of the connection form (Airflow 2.x to 3.1), derived from ``EXTRA_FIELDS``.

        Numbers with decimals use text fields (the only choices are integer, text, password and boolean); the connection
        parses them strictly.
        """
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        widgets: dict[str, Any] = {}
        for field in EXTRA_FIELDS:
            label = lazy_gettext(field.label)
            if field.kind == "boolean":
                widgets[field.name] = BooleanField(label, description=field.description, default=field.default)
            elif field.kind == "integer":
                widgets[field.name] = IntegerField(
                    label,
                    widget=BS3TextFieldWidget(),
                    validators=[Optional(), NumberRange(min=field.minimum)],
                    description=field.description,
                    default=field.default,
                )
            else:
                default = None if field.default is None else str(field.default)
                widgets[field.name] = StringField(
                    label, widget=BS3TextFieldWidget(), validators=[Optional()], description=field.description, default=default
                )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden, relabelled and placeholder fields of the connection form (Airflow 2.x to 3.1)."""
        return {"hidden_fields": list(HIDDEN_FIELDS), "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}
