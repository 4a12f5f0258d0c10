"""The sandbox HTTP server: Bluecore's Events API endpoint, a web page to look at what arrived, and JSON endpoints.

Endpoints (all on one port):

========================================  ==========================================================================
``POST /api/track/mobile/v1``              202 ``{"status": "accepted"}`` for a valid event; 400
                                           ``{"status": "rejected", "reasons": ["field: rule", ...]}`` otherwise
``GET /``                                  the web page (plain HTML, CSS and JavaScript served from this package)
``GET /healthz``                           200 ``{"status": "ok"}``, or 503 when the store stopped working
``HEAD`` on any path                       the status without a body (405 ``Allow: POST`` on the events endpoint)
``GET /api/stats``                         totals per event, namespace, fault settings and what the faults did
``GET /api/events?limit=50&event=NAME``    latest accepted events, newest first
``GET /api/rejections?limit=50``           latest rejected events and their reasons
``GET /api/customer?q=ID_OR_EMAIL``        one customer's timeline, following identify links
``GET /api/audience?event=E&min=N&days=D``  customers who did E at least N times in the last D days
========================================  ==========================================================================

The rules are the provider's own (:func:`airflow_provider_bluecore.sandbox.rules.check_event`), so the sandbox is stricter than
Bluecore on purpose: whatever the sandbox accepts, the provider would send as it is.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import ipaddress
import json
import logging
import math
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_bluecore import __version__
from airflow_provider_bluecore.events import DEFAULT_MAX_EVENT_BYTES, is_email
from airflow_provider_bluecore.sandbox.rules import check_event
from airflow_provider_bluecore.sandbox.store import AcceptedEvent, EventStore, Rejection, StoreClosedError

__all__ = ["TRACK_PATH", "Faults", "SandboxServer"]

log = logging.getLogger(__name__)

TRACK_PATH = "/api/track/mobile/v1"
#: Requests larger than this are refused with 413 before being read (events themselves are limited far lower).
MAX_BODY_BYTES = 1024 * 1024
_ACCEPTED = b'{"status":"accepted"}'
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
# The page loads nothing but its own script and stylesheet and talks only to this server; event data can never run as code.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Faults:
    """Failures the sandbox injects into ``POST /api/track/mobile/v1`` to rehearse what the provider does about them.

    Each request first waits ``latency`` seconds, then draws once: with probability ``drop_rate`` the connection is closed
    without an answer, with ``error_rate`` it is answered 500, with ``throttle_rate`` 429 with ``Retry-After``; otherwise it
    is handled normally. A faulted event is not stored (a client is expected to retry it).

    :param latency: seconds added before answering each event.
    :param error_rate: share of events answered 500 (0 to 1).
    :param throttle_rate: share of events answered 429.
    :param retry_after: the ``Retry-After`` header sent with a 429, in whole seconds.
    :param drop_rate: share of events whose connection is closed without an answer.
    :param seed: seed of the random draws, for a reproducible sequence of faults.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency must be a number of seconds >= 0, not {self.latency!r}")
        for name in ("error_rate", "throttle_rate", "drop_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a share between 0 and 1, not {value!r}")
        if self.error_rate + self.throttle_rate + self.drop_rate > 1.0 + 1e-9:
            raise ValueError("error_rate + throttle_rate + drop_rate must not exceed 1")
        if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int) or self.retry_after < 0:
            raise ValueError(f"retry_after must be a whole number of seconds >= 0, not {self.retry_after!r}")

    @property
    def active(self) -> bool:
        """True when any fault is configured."""
        return bool(self.latency or self.error_rate or self.throttle_rate or self.drop_rate)

    def describe(self) -> str:
        """A one-line human description, e.g. ``latency 50 ms, 10% 500s, 5% 429 (Retry-After 1 s)``."""
        if not self.active:
            return "none"
        parts = []
        if self.latency:
            parts.append(f"latency {self.latency * 1000:g} ms")
        if self.error_rate:
            parts.append(f"{self.error_rate:.0%} answered 500")
        if self.throttle_rate:
            parts.append(f"{self.throttle_rate:.0%} answered 429 (Retry-After {self.retry_after} s)")
        if self.drop_rate:
            parts.append(f"{self.drop_rate:.0%} connections dropped")
        return ", ".join(parts)


class _Counters:
    """What the sandbox did with the requests it received (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.served_500 = 0
        self.served_429 = 0
        self.dropped = 0

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.requests,
                "served_500": self.served_500,
                "served_429": self.served_429,
                "dropped": self.dropped,
            }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    sandbox: SandboxServer

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        self._date: tuple[int, str] = (0, "")
        super().__init__(address, _Handler)

    def http_date(self) -> str:
        """The ``Date`` header value, formatted once per second rather than once per answer."""
        second = int(time.time())
        cached = self._date
        if cached[0] != second:
            cached = self._date = (second, email.utils.formatdate(second, usegmt=True))
        return cached[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_sockets(self) -> None:
        """Wake every handler blocked on an idle keep-alive connection so its thread ends."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal under fault injection; anything else is worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        log.error("Sandbox request failed: %s", type(exc).__name__, exc_info=exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"bluecore-sandbox/{__version__}"
    sys_version = ""
    disable_nagle_algorithm = True  # answers go out at once, not held back waiting for the client's ACK
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _HTTPServer
    fields: dict[str, str]
    raw_requestline: bytes  # set by handle_one_request before parse_request

    def log_message(self, format: str, *args: Any) -> None:
        return  # request lines hold customer e-mails in query strings (/api/customer?q=...): never logged

    def parse_request(self) -> bool:
        """Parse the request line and headers into :attr:`fields` (lower-case names).

        The standard library runs every request's headers through the ``email`` package, which costs more than everything
        else the sandbox does for an event; a plain split keeps up with the provider's concurrent delivery. Same limits:
        100 headers of at most 64 KiB, HTTP/1.x only, keep-alive unless the client says otherwise.
        """
        self.command = ""
        self.close_connection = True
        self.request_version = "HTTP/0.9"
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request line")
            return False
        self.command, self.path, self.request_version = words
        fields: dict[str, str] = {}
        for _ in range(101):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Header line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon:
                self.send_error(HTTPStatus.BAD_REQUEST, "Malformed header line")
                return False
            fields[name.strip().lower()] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.fields = fields
        connection = fields.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if fields.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    # -- plumbing ------------------------------------------------------------------------------------------------------

    def send_bytes(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        # One write per answer (status line, headers and body together): every socket call releases and retakes the GIL,
        # and with many keep-alive connections those hand-overs, not the work, are what limits the rate.
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.server.http_date()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
        ]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_bytes(status, body, "application/json", headers)

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413 when it cannot or should not be read."""
        length_header = self.fields.get("content-length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            self.send_json(411, {"status": "rejected", "reasons": ["body: a Content-Length header is required"]})
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_json(413, {"status": "rejected", "reasons": [f"body: larger than {MAX_BODY_BYTES} bytes"]})
            return None
        return self.rfile.read(length) if length else b""

    def drop(self) -> None:
        """Close the connection without answering, as a crashed load balancer would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- routes --------------------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.read_body()
        if body is None or not self.trusted_host():
            return
        if path != TRACK_PATH:
            self.send_json(404, {"error": f"no such endpoint; events go to POST {TRACK_PATH}"})
            return
        self.server.sandbox._handle_track(self, body)

    def trusted_host(self) -> bool:
        """Refuse (403) a loopback sandbox reached under another name: a web page using DNS rebinding must not read it."""
        if not self.server.sandbox.loopback:
            return True
        host = self.fields.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.strip("[]").lower() in _LOOPBACK_NAMES:
            return True
        self.close_connection = True
        self.send_json(403, {"error": "this sandbox only answers requests addressed to a loopback host name"})
        return False

    def do_HEAD(self) -> None:
        """Reachability probes (``BluecoreHook.test_connection`` sends HEAD): the status GET would give, without a body."""
        if not self.trusted_host():
            return
        path = urlsplit(self.path).path
        if path == TRACK_PATH:
            self.send_bytes(405, b"", "application/json", {"Allow": "POST"})
        elif path in _STATIC or path in self.server.sandbox._api_routes():
            self.send_bytes(200, b"", "application/json")
        else:
            self.send_bytes(404, b"", "application/json")

    def do_GET(self) -> None:
        if not self.trusted_host():
            return
        parts = urlsplit(self.path)
        sandbox = self.server.sandbox
        if parts.path in _STATIC:
            name, content_type = _STATIC[parts.path]
            headers = {"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
            self.send_bytes(200, sandbox._asset(name), content_type, headers)
            return
        if parts.path == TRACK_PATH:
            self.send_json(405, {"error": f"use POST {TRACK_PATH}"}, {"Allow": "POST"})
            return
        route = sandbox._api_routes().get(parts.path)
        if route is None:
            self.send_json(404, {"error": "not found"})
            return
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            status, payload = route(params)
        except StoreClosedError as exc:
            status, payload = 503, {"error": str(exc)}
        self.send_json(status, payload)


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def _float_param(params: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not (math.isfinite(value) and low < value <= high):
        raise ValueError(f"{name} must be above {low:g} and at most {high:g}")
    return value


def _event_email(event: Any) -> str | None:
    """The customer e-mail an accepted event carries (``customer.email``, else ``properties.email``), if any."""
    props = event.get("properties") if isinstance(event, Mapping) else None
    if not isinstance(props, Mapping):
        return None
    customer = props.get("customer")
    email = customer.get("email") if isinstance(customer, Mapping) else None
    if email is None:
        email = props.get("email")
    return email if is_email(email) else None


class SandboxServer:
    """A local stand-in for Bluecore's Events API, usable in-process (tests, the demo) and from ``bluecore sandbox``.

    ``__init__`` only checks and stores its arguments; :meth:`start` opens the database and binds the port. Use it as a context
    manager, or call :meth:`start` and :meth:`stop`::

        with SandboxServer(namespace="bluestore") as sandbox:
            os.environ["AIRFLOW_CONN_BLUECORE_DEFAULT"] = json.dumps(
                {"conn_type": "bluecore", "login": "bluestore", "host": sandbox.url}
            )
            ...

    :param host: the address to listen on (keep it on loopback: the sandbox has no authentication).
    :param port: the port; 0 picks a free one (read it back from :attr:`url`).
    :param db_path: the SQLite file that keeps accepted events; reused when it exists. None (default): a temporary file,
        deleted by :meth:`stop`.
    :param namespace: the only ``token`` accepted; None (default) accepts any non-empty token.
    :param reset: empty an existing ``db_path`` on start.
    :param latency: seconds added before answering each event (see :class:`Faults`).
    :param error_rate: share of events answered 500.
    :param throttle_rate: share of events answered 429 with ``Retry-After``.
    :param retry_after: the ``Retry-After`` seconds sent with a 429.
    :param drop_rate: share of events whose connection is closed without an answer.
    :param seed: seed of the fault draws.
    :param max_event_bytes: the largest serialised event accepted (the provider's default, 32 KiB).
    :param clock: the time source for arrival times and the audience window (Unix seconds); tests move it to the past.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        db_path: str | Path | None = None,
        namespace: str | None = None,
        reset: bool = False,
        latency: float = 0.0,
        error_rate: float = 0.0,
        throttle_rate: float = 0.0,
        retry_after: int = 1,
        drop_rate: float = 0.0,
        seed: int | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if namespace is not None and not namespace.strip():
            raise ValueError("namespace must be a non-empty string or None")
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self.host = host
        self.port = port
        self.db_path: Path | None = Path(db_path) if db_path is not None else None
        self.namespace = namespace
        self.reset = reset
        self.faults = Faults(latency, error_rate, throttle_rate, retry_after, drop_rate, seed)
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.counters = _Counters()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._temp_dir: str | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._store: EventStore | None = None
        self._assets: dict[str, bytes] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Open (or create) the database, bind the port and serve in a background thread. Returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the sandbox is already running")
        if self.db_path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="bluecore-sandbox-")
            self.db_path = Path(self._temp_dir) / "sandbox.sqlite3"
        static = resources.files("airflow_provider_bluecore.sandbox") / "static"
        self._assets = {name: (static / name).read_bytes() for name, _ in _STATIC.values()}
        self._store = EventStore(self.db_path).open(reset=self.reset)
        try:
            self._httpd = _HTTPServer((self.host, self.port), self)
        except BaseException:
            self._store.close()
            self._cleanup_temp()
            raise
        self.port = self._httpd.server_address[1]
        # A short poll interval makes stop() return promptly (shutdown() waits for the loop's next poll).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="bluecore-sandbox", daemon=True
        )
        self._thread.start()
        log.info("Bluecore sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, commit what is queued and close the database (deleting it when it was temporary)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_open_sockets()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self._cleanup_temp()

    def _cleanup_temp(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self.db_path = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``: use it as the connection's host."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        """The full Events API URL (``url`` + ``/api/track/mobile/v1``)."""
        return self.url + TRACK_PATH

    @functools.cached_property
    def loopback(self) -> bool:
        """True when listening on a loopback address (then only loopback ``Host`` headers are answered)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    @property
    def temporary(self) -> bool:
        """True when the database is a temporary file deleted by :meth:`stop`."""
        return self._temp_dir is not None

    @property
    def store(self) -> EventStore:
        """The running store (for in-process queries: ``stats()``, ``latest()``, ``customer()``, ``audience()``)."""
        if self._store is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return self._store

    def _asset(self, name: str) -> bytes:
        return self._assets[name]

    # -- the Events API ----------------------------------------------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        faults = self.faults
        if not (faults.drop_rate or faults.error_rate or faults.throttle_rate):
            return None
        with self._rng_lock:
            u = self._rng.random()
        if u < faults.drop_rate:
            return "drop"
        if u < faults.drop_rate + faults.error_rate:
            return "500"
        if u < faults.drop_rate + faults.error_rate + faults.throttle_rate:
            return "429"
        return None

    def _handle_track(self, handler: _Handler, body: bytes) -> None:
        """Answer one ``POST /api/track/mobile/v1``: faults first, then the rules, then store and 202 (or 400)."""
        counters = self.counters
        with counters.lock:
            counters.requests += 1
        if self.faults.latency:
            time.sleep(self.faults.latency)
        fault = self._draw_fault()
        if fault == "drop":
            with counters.lock:
                counters.dropped += 1
            handler.drop()
            return
        if fault == "500":
            with counters.lock:
                counters.served_500 += 1
            handler.send_json(500, {"status": "error", "error": "injected fault (sandbox --error-rate)"})
            return
        if fault == "429":
            with counters.lock:
                counters.served_429 += 1
            handler.send_json(
                429,
                {"status": "error", "error": "injected fault (sandbox --throttle-rate)"},
                {"Retry-After": str(self.faults.retry_after)},
            )
            return
        status, payload = self.track(body)
        if status == 202:
            handler.send_bytes(202, _ACCEPTED, "application/json")
        else:
            handler.send_json(status, payload)

    def track(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Check and store one request body; the status and JSON answer (202, 400, or 503 when the store is down)."""
        store = self.store
        event: Any = None
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            reasons = [f"body: is not valid JSON ({exc})"[:200]]
            prepared = None
        else:
            prepared, problems = check_event(
                event, namespace=self.namespace, require_token=True, max_event_bytes=self.max_event_bytes
            )
            reasons = [str(p) for p in problems]
        try:
            if prepared is None:
                name = event.get("event") if isinstance(event, dict) else None
                store.add(Rejection(self.clock(), name[:64] if isinstance(name, str) and name else None, reasons))
                return 400, {"status": "rejected", "reasons": reasons}
            store.add(
                AcceptedEvent(self.clock(), prepared.name, prepared.distinct_id, _event_email(event), prepared.body.decode())
            )
        except StoreClosedError as exc:
            return 503, {"status": "error", "error": str(exc)}
        return 202, {"status": "accepted"}

    # -- JSON endpoints ------------------------------------------------------------------------------------------------------

    def _api_routes(self) -> dict[str, Callable[[Mapping[str, str]], tuple[int, Any]]]:
        """``GET`` path -> handler of the query parameters returning ``(status, JSON payload)``."""
        return {
            "/healthz": self._healthz,
            "/api/stats": self._stats,
            "/api/events": self._events,
            "/api/rejections": self._rejections,
            "/api/customer": self._customer,
            "/api/audience": self._audience,
        }

    def _healthz(self, params: Mapping[str, str]) -> tuple[int, Any]:
        healthy = self._store is not None and self._store.healthy
        return (200, {"status": "ok"}) if healthy else (503, {"status": "unavailable"})

    def _stats(self, params: Mapping[str, str]) -> tuple[int, Any]:
        stats = self.store.stats()
        stats.update(
            {
                "namespace": self.namespace,
                "endpoint": TRACK_PATH,
                "version": __version__,
                "faults": {**asdict(self.faults), "description": self.faults.describe()},
                "served": self.counters.snapshot(),
            }
        )
        return 200, stats

    def _events(self, params: Mapping[str, str]) -> tuple[int, Any]:
        try:
            limit = _int_param(params, "limit", 50, 1, 1000)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, {"events": self.store.latest(limit, params.get("event") or None)}

    def _rejections(self, params: Mapping[str, str]) -> tuple[int, Any]:
        try:
            limit = _int_param(params, "limit", 50, 1, 1000)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, {"rejections": self.store.rejections(limit)}

    def _customer(self, params: Mapping[str, str]) -> tuple[int, Any]:
        query = params.get("q", "").strip()
        if not query:
            return 400, {"error": "q (a distinct_id or an e-mail) is required"}
        return 200, self.store.customer(query)

    def _audience(self, params: Mapping[str, str]) -> tuple[int, Any]:
        event = params.get("event", "").strip()
        if not event:
            return 400, {"error": "event is required"}
        try:
            min_count = _int_param(params, "min", 1, 1, 1_000_000)
            days = _float_param(params, "days", 7.0, 0.0, 3650.0)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, self.store.audience(event, min_count, days, now=self.clock())
