"""A real HTTP server on 127.0.0.1 that stands in for Bluecore in tests.

It records every request it receives (method, path, headers, parsed JSON body, arrival time) and answers according to a
script: a list of actions consumed one per request, then ``default``. Actions:

* ``202`` (or any int): answer with that status and an empty JSON body;
* ``(429, {"Retry-After": "1"})``: a status with headers;
* ``"drop"``: close the connection without answering (the client sees a connection error);
* ``("delay", seconds, action)``: wait, then perform ``action``.

``fault`` is an optional callable ``(request_number, body) -> action | None`` for randomised fault injection.
The server tracks how many requests are in flight at once (``peak_in_flight``, and ``Received.in_flight`` at each arrival) so
tests can observe concurrency from the outside.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    answered: int | None = None
    in_flight: int = 0  # requests being handled when this one arrived, itself included


@dataclass
class StubState:
    script: list[Action] = field(default_factory=list)
    default: Action = 202
    delay: float = 0.0
    fault: Callable[[int, Any], Action | None] | None = None
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle + delayed ACK would add ~40 ms per answer
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with state.lock:
            state.count += 1
            number = state.count
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            in_flight = state.in_flight
            action = state.script.pop(0) if state.script else None
        if action is None and state.fault is not None:
            action = state.fault(number, body)
        if action is None:
            action = state.default
        rec = Received(self.command, self.path, dict(self.headers.items()), body, raw, time.monotonic(), in_flight=in_flight)
        self._settled = False
        try:
            if state.delay:
                time.sleep(state.delay)
            self._perform(action, rec)
        finally:
            self._settle(rec)

    def _settle(self, rec: Received) -> None:
        """Record the request and leave the in-flight count *before* answering, so a client that has its answer sees both."""
        if not self._settled:
            self._settled = True
            with self.server.state.lock:
                self.server.state.in_flight -= 1
                self.server.state.requests.append(rec)

    def _perform(self, action: Action, rec: Received) -> None:
        if isinstance(action, tuple) and action and action[0] == "delay":
            time.sleep(action[1])
            return self._perform(action[2], rec)
        if action == "drop":
            self._settle(rec)
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        headers: dict[str, str] = {}
        if isinstance(action, tuple):
            status, headers = action
        else:
            status = int(action)
        rec.answered = status
        self._settle(rec)
        payload = b'{"status": "ok"}' if status < 400 else b'{"error": "stub says no"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)
        return None

    do_POST = _handle
    do_GET = _handle
    do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    state: StubState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connections (or a "drop" action) is normal here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StubBluecore:
    """Context manager running the stub server on a free loopback port."""

    def __init__(self) -> None:
        self.state = StubState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="stub-bluecore", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def received(self) -> list[Received]:
        """Requests that were answered with a status (not dropped), in arrival order."""
        with self.state.lock:
            return sorted((r for r in self.state.requests if r.answered is not None), key=lambda r: r.at)

    @property
    def accepted(self) -> list[Any]:
        """Bodies of requests answered 2xx, in arrival order."""
        return [r.body for r in self.received if r.answered is not None and 200 <= r.answered < 300]

    def __enter__(self) -> StubBluecore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
