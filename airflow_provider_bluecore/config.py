"""The `bluecore` connection, parsed strictly into a :class:`BluecoreConfig`.

A plain module (no Airflow import). The same rules apply whether a connection comes from the JSON form (extras are real JSON
types), the URI form (every extra is a string) or the Airflow 2.x form (numbers typed as text): strings are parsed explicitly,
never by truthiness, and anything unreadable is a :class:`~airflow_provider_bluecore.exceptions.BluecoreConfigError` naming the
field and the rule, e.g. ``extra.timeout: must be a number of seconds > 0, got 'abc'``. All problems are reported at once.

Connection fields:

* ``login`` -- the Bluecore namespace, sent as ``properties.token``. Required; surrounding whitespace is rejected rather than
  trimmed, so the namespace sent is exactly the one stored.
* ``host`` -- the API base URL, default ``https://api.bluecore.app``. A host without a scheme gets ``https://``. The old
  ``api.bluecore.com`` still works but logs a warning and is replaced by ``api.bluecore.app``. Plain ``http://`` is accepted only
  for loopback hosts (127.0.0.0/8, ::1, ``localhost``: a local sandbox) unless ``allow_insecure_http`` is true. A trailing
  ``/api/track/mobile/v1`` (a pasted endpoint) is removed. Credentials, query strings and fragments in the host are rejected.
* ``port`` -- optional; when given (the form's Port field, or the URI form ``bluecore://ns@127.0.0.1:8765``) it is added to
  the host, and a port that contradicts one written in the host is an error. The form shows it (placeholder 443) because the
  Airflow 3.3.2 UI's Test button refuses a connection saved without a port (apache/airflow#73298).
* ``schema`` and ``password`` are not used (the namespace is a public write key, not a secret).

Extras are listed in :data:`EXTRA_FIELDS`, the single table from which the Airflow connection form is also derived (provider
info ``conn-fields`` and the hook's form classmethods). Unknown extras are an error (a typo would otherwise be ignored
silently). An extra that is absent, ``null`` or an empty string takes its default. Booleans accept JSON ``true``/``false``, the
integers 1/0 and, case-insensitively, the strings ``true/false``, ``yes/no``, ``on/off``, ``1/0``; anything else is an error.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_bluecore.events import DEFAULT_MAX_EVENT_BYTES, EventDefaults
from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINT_PATH",
    "EXTRA_FIELDS",
    "HIDDEN_FIELDS",
    "LEGACY_HOST",
    "PLACEHOLDERS",
    "RELABELING",
    "BluecoreConfig",
    "ExtraField",
    "normalize_base_url",
    "parse_bool",
    "provider_conn_fields",
    "provider_ui_field_behaviour",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.bluecore.app"
ENDPOINT_PATH = "/api/track/mobile/v1"
#: The endpoint's host before March 2024; still re-routed by Bluecore, replaced here by ``api.bluecore.app``.
LEGACY_HOST = "api.bluecore.com"
CURRENT_HOST = "api.bluecore.app"

_TRUE_STRINGS = frozenset({"true", "yes", "on", "1"})
_FALSE_STRINGS = frozenset({"false", "no", "off", "0"})
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class ExtraField:
    """One connection extra: its type, default, bounds and how the connection form shows it.

    :param name: the key in the connection's ``extra`` JSON.
    :param kind: ``"number"``, ``"integer"``, ``"boolean"`` or ``"string"``.
    :param label: the form label.
    :param description: the help text shown under the form field.
    :param default: the value used when the extra is absent, null or empty.
    :param minimum: the smallest accepted value (numbers and integers).
    :param exclusive_minimum: whether ``minimum`` itself is rejected.
    :param unit: how the rule names the value ("a number of seconds").
    """

    name: str
    kind: str
    label: str
    description: str
    default: Any = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    unit: str = ""

    @property
    def rule(self) -> str:
        """The rule in words, as used in error messages."""
        if self.kind == "boolean":
            return "must be true or false (or yes/no, on/off, 1/0)"
        if self.kind == "string":
            return "must be a string"
        what = self.unit or ("a whole number" if self.kind == "integer" else "a number")
        if self.minimum is None:
            return f"must be {what}"
        bound = int(self.minimum) if float(self.minimum).is_integer() else self.minimum
        return f"must be {what} {'>' if self.exclusive_minimum else '>='} {bound}"

    def parse(self, raw: Any) -> Any:
        """The typed value of ``raw`` (a JSON value or a string from a URI); raises ``ValueError`` with the rule."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return self.default
        if self.kind == "boolean":
            return parse_bool(raw, self.rule)
        if self.kind == "string":
            if not isinstance(raw, str):
                raise ValueError(f"{self.rule} (quote it in JSON)")
            return raw
        value = _parse_integer(raw, self.rule) if self.kind == "integer" else _parse_number(raw, self.rule)
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            raise ValueError(self.rule)
        return value


#: Every extra the `bluecore` connection understands, in form order. The one source of the form (see module docstring).
EXTRA_FIELDS: tuple[ExtraField, ...] = (
    ExtraField(
        "timeout",
        "number",
        "Read timeout (s)",
        "Seconds to wait for Bluecore's answer to one request.",
        default=10.0,
        minimum=0,
        exclusive_minimum=True,
        unit="a number of seconds",
    ),
    ExtraField(
        "connect_timeout",
        "number",
        "Connect timeout (s)",
        "Seconds to wait for a connection to be established.",
        default=5.0,
        minimum=0,
        exclusive_minimum=True,
        unit="a number of seconds",
    ),
    ExtraField(
        "max_retries",
        "integer",
        "Max retries",
        "Retries after the first attempt on connection errors, timeouts, 408, 429 and 5xx (not 501/505). 0 disables retries.",
        default=5,
        minimum=0,
    ),
    ExtraField(
        "backoff_base",
        "number",
        "Backoff base (s)",
        "First backoff ceiling in seconds; doubles at each retry (capped at 30 s), full jitter. Retry-After is honoured.",
        default=0.5,
        minimum=0,
        unit="a number of seconds",
    ),
    ExtraField(
        "concurrency",
        "integer",
        "Concurrency",
        "Requests in flight at once when sending many events.",
        default=16,
        minimum=1,
    ),
    ExtraField(
        "max_events_per_second",
        "number",
        "Max events per second",
        "Upper bound on the sending rate when sending many events. Empty: no limit.",
        default=None,
        minimum=0,
        exclusive_minimum=True,
        unit="a number of events per second",
    ),
    ExtraField("client", "string", "Client", "Filled into events without a 'client' (e.g. your app version)."),
    ExtraField("device", "string", "Device", "Filled into events without a 'device' (e.g. 'warehouse')."),
    ExtraField(
        "max_event_bytes",
        "integer",
        "Max event size (bytes)",
        "Events larger than this once serialised are rejected, never sent.",
        default=DEFAULT_MAX_EVENT_BYTES,
        minimum=1,
        unit="a whole number of bytes",
    ),
    ExtraField(
        "allow_insecure_http",
        "boolean",
        "Allow plain http://",
        "Allow http:// to a host that is not loopback. Only for a trusted proxy: the namespace travels in clear text.",
        default=False,
    ),
)
_EXTRAS_BY_NAME = {f.name: f for f in EXTRA_FIELDS}

#: Standard fields hidden in the form: the namespace is not a password and there is no schema. The port stays: it is optional
#: (it can also be written in the host), but the Airflow 3.3.2 UI's Test button answers "Bad Request" for a connection
#: saved without one (apache/airflow#73298), so the form offers it with the https default as placeholder.
HIDDEN_FIELDS: tuple[str, ...] = ("schema", "password")
RELABELING: dict[str, str] = {"login": "Namespace", "host": "API base URL"}
PLACEHOLDERS: dict[str, str] = {"login": "bluestore", "host": DEFAULT_BASE_URL, "port": "443"}

_JSON_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean", "string": "string"}
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {"number": (int, float), "integer": (int,), "boolean": (bool,), "string": (str,)}


def provider_conn_fields() -> dict[str, dict[str, Any]]:
    """The provider-info ``conn-fields`` (Airflow 3.2+ connection form), derived from :data:`EXTRA_FIELDS`."""
    out: dict[str, dict[str, Any]] = {}
    for field in EXTRA_FIELDS:
        schema: dict[str, Any] = {"type": [_JSON_TYPES[field.kind], "null"]}
        if field.default is not None:
            schema["default"] = field.default
        if field.minimum is not None:
            schema["exclusiveMinimum" if field.exclusive_minimum else "minimum"] = field.minimum
        out[field.name] = {"label": field.label, "description": field.description, "schema": schema}
    return out


def provider_ui_field_behaviour() -> dict[str, Any]:
    """The provider-info ``ui-field-behaviour`` (kebab-case keys, as in provider.yaml)."""
    return {"hidden-fields": list(HIDDEN_FIELDS), "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}


def parse_bool(raw: Any, rule: str = "must be true or false") -> bool:
    """A boolean from JSON (``true``, 1/0) or a string (``true/false``, ``yes/no``, ``on/off``, ``1/0``; any case)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE_STRINGS:
            return True
        if text in _FALSE_STRINGS:
            return False
    raise ValueError(rule)


def _parse_number(raw: Any, rule: str) -> float:
    if isinstance(raw, bool):
        raise ValueError(rule)
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(rule) from None
    else:
        raise ValueError(rule)
    if not math.isfinite(value):
        raise ValueError(rule)
    return value


def _parse_integer(raw: Any, rule: str) -> int:
    if isinstance(raw, bool):
        raise ValueError(rule)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(rule) from None
    raise ValueError(rule)


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_base_url(
    host: Any,
    *,
    port: Any = None,
    allow_insecure_http: bool = False,
    problems: list[str] | None = None,
) -> str:
    """The base URL for ``host`` (and ``port``) per the rules in the module docstring.

    Problems are appended to ``problems`` when given (the default URL is returned then); otherwise the first one is raised as a
    :class:`BluecoreConfigError`.
    """
    found: list[str] = [] if problems is None else problems
    before = len(found)
    url = _normalize_base_url(host, port, allow_insecure_http, found)
    if problems is None and len(found) > before:
        raise BluecoreConfigError("; ".join(found))
    return url if len(found) == before else DEFAULT_BASE_URL


def _normalize_base_url(host: Any, port: Any, allow_insecure_http: bool, problems: list[str]) -> str:
    if host is None or host == "":
        text = DEFAULT_BASE_URL
    elif not isinstance(host, str):
        problems.append(f"host: must be a URL string, got {_shown(host)}")
        return DEFAULT_BASE_URL
    elif not host.strip():
        problems.append("host: must not be blank (leave it empty for the default https://api.bluecore.app)")
        return DEFAULT_BASE_URL
    elif host != host.strip():
        problems.append(f"host: must not start or end with whitespace, got {_shown(host)}")
        return DEFAULT_BASE_URL
    else:
        text = host if _SCHEME.match(host) else f"https://{host}"
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError as exc:
        problems.append(f"host: is not a valid URL ({exc}), got {_shown(host)}")
        return DEFAULT_BASE_URL
    scheme = parts.scheme.lower()
    hostname = parts.hostname or ""
    count = len(problems)
    if scheme not in ("http", "https"):
        problems.append(f"host: the scheme must be https:// (or http:// for a loopback host), got {scheme + '://'!r}")
    if not hostname:
        problems.append(f"host: has no host name, got {_shown(host)}")
    if parts.username is not None or parts.password is not None:
        problems.append("host: must not contain credentials (user:password@); the namespace goes in login")
    if parts.query or parts.fragment:
        problems.append("host: must not contain a query string or fragment")
    if port not in (None, ""):
        try:
            extra_port = _parse_integer(port, "")
            if not 0 < extra_port < 65536:
                raise ValueError
        except ValueError:
            problems.append(f"port: must be a whole number between 1 and 65535, got {_shown(port)}")
        else:
            if url_port is not None and url_port != extra_port:
                problems.append(f"port: {extra_port} contradicts the port {url_port} in host")
            url_port = extra_port
    if len(problems) > count:
        return DEFAULT_BASE_URL

    path = parts.path.rstrip("/")
    if path.endswith(ENDPOINT_PATH):
        path = path[: -len(ENDPOINT_PATH)].rstrip("/")
    if hostname == LEGACY_HOST:
        log.warning(
            "host %s is Bluecore's old endpoint; using %s instead (old URLs are re-routed, new integrations must use .app)",
            LEGACY_HOST,
            CURRENT_HOST,
        )
        hostname, scheme = CURRENT_HOST, "https"
        url_port = None if url_port in (80, 443) else url_port
    if scheme == "http" and not allow_insecure_http and not _is_loopback(hostname):
        problems.append(
            f"host: plain http:// is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost), got {hostname!r}; "
            "use https:// or set extra.allow_insecure_http to true"
        )
        return DEFAULT_BASE_URL
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if url_port is not None and url_port != {"http": 80, "https": 443}[scheme]:
        netloc = f"{netloc}:{url_port}"
    return f"{scheme}://{netloc}{path}"


def _namespace_problem(login: Any) -> str | None:
    if login is None or (isinstance(login, str) and not login.strip()):
        return "login (Namespace): is required: your Bluecore namespace, sent as properties.token"
    if not isinstance(login, str):
        return f"login (Namespace): must be a string, got {_shown(login)}"
    if login != login.strip():
        return f"login (Namespace): must not start or end with whitespace, got {_shown(login)}"
    return None


def _extra_dict(extra: Any, problems: list[str]) -> dict[str, Any]:
    if extra is None or extra == "":
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError as exc:
            problems.append(f"extra: must be a JSON object ({exc.__class__.__name__}: {exc})")
            return {}
    if not isinstance(extra, Mapping):
        problems.append(f"extra: must be a JSON object, got {type(extra).__name__}")
        return {}
    return dict(extra)


@dataclass(frozen=True)
class BluecoreConfig:
    """A validated `bluecore` connection. Build it with :meth:`from_connection`; direct construction is checked the same way.

    :param namespace: the Bluecore namespace (connection ``login``), sent as ``properties.token``.
    :param base_url: the API base URL without a trailing slash, e.g. ``https://api.bluecore.app``.
    :param timeout: read timeout per request, in seconds.
    :param connect_timeout: connect timeout per request, in seconds.
    :param max_retries: retries after the first attempt (see :mod:`airflow_provider_bluecore.retry`).
    :param concurrency: requests in flight at once in bulk deliveries.
    :param max_events_per_second: the highest bulk sending rate, or None for no limit.
    :param client: filled into events that have no ``client``.
    :param device: filled into events that have no ``device``.
    :param allow_insecure_http: whether plain ``http://`` is allowed to a host that is not loopback.
    :param max_event_bytes: the largest serialised event accepted.
    :param backoff_base: the first backoff ceiling in seconds (doubles per retry, full jitter).
    """

    namespace: str
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0
    connect_timeout: float = 5.0
    max_retries: int = 5
    concurrency: int = 16
    max_events_per_second: float | None = None
    client: str | None = None
    device: str | None = None
    allow_insecure_http: bool = False
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    backoff_base: float = 0.5

    def __post_init__(self) -> None:
        problems: list[str] = []
        if (problem := _namespace_problem(self.namespace)) is not None:
            problems.append(problem)
        for field in EXTRA_FIELDS:
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            try:
                if not isinstance(value, _PYTHON_TYPES[field.kind]) or isinstance(value, bool) != (field.kind == "boolean"):
                    raise ValueError(field.rule)
                field.parse(value)
            except ValueError as exc:
                problems.append(f"extra.{field.name}: {exc}, got {_shown(value)}")
        if not problems:
            base_url = normalize_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http, problems=problems)
            object.__setattr__(self, "base_url", base_url)
        if problems:
            raise BluecoreConfigError("invalid Bluecore connection: " + "; ".join(problems))

    @classmethod
    def from_connection(
        cls,
        login: Any,
        host: Any = None,
        extra: Mapping[str, Any] | str | None = None,
        *,
        port: Any = None,
    ) -> BluecoreConfig:
        """Parse an Airflow connection's fields strictly.

        :param login: the namespace.
        :param host: the API base URL (scheme optional; https assumed).
        :param extra: the extras, as a dict (JSON form) or a JSON string (``Connection.extra``); URI-form values are strings.
        :param port: the connection's port, if any (URI form); added to the host.
        :raises BluecoreConfigError: listing every problem, each naming the field and the rule.
        """
        problems: list[str] = []
        if (problem := _namespace_problem(login)) is not None:
            problems.append(problem)
        raw = _extra_dict(extra, problems)
        values: dict[str, Any] = {}
        for key, value in raw.items():
            field = _EXTRAS_BY_NAME.get(key)
            if field is None:
                close = difflib.get_close_matches(str(key), _EXTRAS_BY_NAME, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(f"extra.{key}: unknown setting; {hint}known: {', '.join(sorted(_EXTRAS_BY_NAME))}")
                continue
            try:
                values[key] = field.parse(value)
            except ValueError as exc:
                problems.append(f"extra.{key}: {exc}, got {_shown(value)}")
        allow_insecure = bool(values.get("allow_insecure_http", False))
        base_url = normalize_base_url(host, port=port, allow_insecure_http=allow_insecure, problems=problems)
        if problems:
            raise BluecoreConfigError("invalid Bluecore connection: " + "; ".join(problems))
        return cls(namespace=login, base_url=base_url, **values)

    @property
    def endpoint_url(self) -> str:
        """Where events are POSTed: ``base_url + "/api/track/mobile/v1"``."""
        return self.base_url + ENDPOINT_PATH

    @property
    def defaults(self) -> EventDefaults:
        """What this connection fills into every event (namespace as token, client, device) and the size limit."""
        return EventDefaults(self.namespace, self.client, self.device, self.max_event_bytes)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy with this connection's ``max_retries`` and ``backoff_base``."""
        return RetryPolicy(max_retries=self.max_retries, backoff_base=self.backoff_base)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (nothing here is secret: the namespace is a public write key)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
