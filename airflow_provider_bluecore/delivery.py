"""The bulk delivery engine: many events to the Events API, fast, in per-customer order, nothing lost.

A plain module (no Airflow import) shared by the hook, the operators, the CLI and the tests. The Events API takes one event per
POST, so throughput comes from concurrency; this module manages that concurrency:

* **Streaming.** The input is any iterable and is never materialised: at most ``max(4 * concurrency, 256)`` events are held
  between being read and being finished, so memory does not grow with the number of events.
* **Per-customer order.** Events with the same ``distinct_id`` are sent one at a time, in input order (identify before
  customer_patch before behaviour); different customers proceed in parallel. When a customer's event finally fails, that
  customer's later events in the run are not sent out of order: they are reported ``failed`` with the reason
  ``not sent: an earlier event for this customer failed (index N)``. Rejected (invalid) events were never sent and do not hold
  back the customer's later events.
* **Rate limit.** ``max_events_per_second`` spaces requests evenly across all workers (no bursts); retries count too.
* **Adaptive concurrency.** A 429 halves the allowed concurrency (never below 1; once per wave of requests, not once per 429
  of the same wave) and a ``Retry-After`` pauses every worker. Each ``limit`` successes raise the limit by one, back up to
  ``concurrency``.
* **Retries** follow :class:`~airflow_provider_bluecore.retry.RetryPolicy`: connection errors, timeouts, 408, 429 and 5xx but
  501/505, with full-jitter backoff and ``Retry-After`` (capped). A waiting retry does not hold a worker.
* **Validation before sending.** Every event goes through :func:`~airflow_provider_bluecore.events.prepare_event`; an invalid one
  is ``rejected`` with every reason. ``max_rejected`` (a count, or a fraction of the events seen) stops reading once crossed; the
  events already read are still sent, then :class:`~airflow_provider_bluecore.exceptions.BluecoreValidationError` carries the
  report.
* **Reporting.** A :class:`DeliveryReport` (counts, retries by status, rate, peak concurrency, a bounded sample of reasons with
  redacted keys), a progress line about every ``progress_interval`` seconds and a one-line summary. Logs hold counts and
  redacted keys only, never payloads or e-mail addresses.

The network sits behind the small :class:`Transport` protocol; :class:`AiohttpTransport` (pooled keep-alive connections, connect
and read timeouts) is the default, and tests or the CLI may pass their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from airflow_provider_bluecore.events import EventDefaults, prepare_event, redact, redact_emails
from airflow_provider_bluecore.exceptions import BluecoreConfigError, BluecoreError, BluecoreValidationError, Problem
from airflow_provider_bluecore.retry import RetryPolicy, is_retryable_status, parse_retry_after

__all__ = [
    "AiohttpTransport",
    "DeliveryReport",
    "Outcome",
    "OutcomeStatus",
    "Transport",
    "TransportError",
    "TransportResponse",
    "deliver",
    "deliver_async",
    "rejects_beyond_limit",
    "usable_distinct_id",
]

OutcomeStatus = Literal["delivered", "failed", "rejected"]

#: Reject/failure reasons kept in a report.
SAMPLE_LIMIT = 20
#: Fewest events seen before a fractional ``max_rejected`` is checked (the end of the input is always checked).
FRACTION_MIN_SEEN = 100
_EXCERPT_CHARS = 200
_LOG = logging.getLogger(__name__)


class TransportError(BluecoreError):
    """No HTTP answer: the connection failed, was dropped, or timed out. Retried like a 5xx.

    :param reason: a short description such as ``"timeout"`` or ``"server disconnected"`` (no payload).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class TransportResponse:
    """What came back for one POST.

    :param status: the HTTP status.
    :param headers: the response headers (looked up as ``Retry-After`` or ``retry-after``).
    :param body_excerpt: the beginning of the body, for error messages (may be empty for 2xx answers).
    """

    status: int
    headers: Mapping[str, str]
    body_excerpt: str = ""


class Transport(Protocol):
    """Sends one event body to the Events API endpoint. Implementations are bound to the event loop that first uses them."""

    async def post(self, body: bytes) -> TransportResponse:
        """POST ``body``; return the answer, or raise :class:`TransportError` when no answer came."""
        ...

    async def close(self) -> None:
        """Release connections. The transport may be used again afterwards (it reconnects lazily)."""
        ...


def _proxy_for(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``/``NO_PROXY``) asks for, resolved once rather than per request."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class AiohttpTransport:
    """The default transport: one aiohttp session with a pool of ``concurrency`` keep-alive connections.

    :param url: the full endpoint URL (``https://api.bluecore.app/api/track/mobile/v1``).
    :param user_agent: sent as ``User-Agent``.
    :param concurrency: the connection pool size.
    :param timeout: seconds to wait for each read of the answer.
    :param connect_timeout: seconds to wait for a TCP/TLS connection.
    """

    def __init__(
        self, url: str, *, user_agent: str, concurrency: int = 16, timeout: float = 10, connect_timeout: float = 5
    ) -> None:
        self.url = url
        self.user_agent = user_agent
        self.concurrency = concurrency
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._session: Any = None
        self._url: Any = url
        self._proxy = _proxy_for(url)

    def _open(self) -> Any:
        import aiohttp
        import yarl

        connector = aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=30)
        # sock_connect, not connect: the pool never has more users than connections, so only the TCP/TLS setup is bounded.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.timeout)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": self.user_agent, "Content-Type": "application/json"},
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies we need; skipping the jar saves CPU per request
        )
        self._url = yarl.URL(self.url)  # parsed once, not per request
        return self._session

    async def post(self, body: bytes) -> TransportResponse:
        """POST one event body; connection problems and timeouts become :class:`TransportError`."""
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.post(self._url, data=body, proxy=self._proxy) as resp:
                raw = await resp.read()
                status = resp.status
                excerpt = "" if 200 <= status < 300 else raw[:_EXCERPT_CHARS].decode("utf-8", "replace")
                return TransportResponse(status, resp.headers, excerpt)
        except asyncio.TimeoutError:
            raise TransportError(f"no answer within {self.timeout:g} s (read) / {self.connect_timeout:g} s (connect)") from None
        except aiohttp.ServerDisconnectedError:
            raise TransportError("server disconnected without answering") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"connection error ({type(exc).__name__})") from None

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@dataclass
class Outcome:
    """What became of one input event; ``on_outcome`` receives one per event.

    :param index: the event's 0-based position in the input.
    :param event: the input object as given.
    :param status: ``delivered`` (a 2xx answer), ``failed`` (not delivered) or ``rejected`` (invalid, never sent).
    :param reasons: why it failed or was rejected (empty when delivered). Field and rule, never payloads.
    :param distinct_id: the customer key (for a rejected event, the raw one when it is a usable string, else None).
    :param payload: the exact bytes sent or meant to be sent; None for rejected events.
    :param attempts: how many requests were made for it (0 when it was never sent).
    """

    index: int
    event: Any
    status: OutcomeStatus
    reasons: list[str]
    distinct_id: str | None
    payload: bytes | None
    attempts: int


@dataclass
class DeliveryReport:
    """The result of one :func:`deliver` call. ``seen == sent + rejected + failed`` once the call has finished.

    :param seen: events read from the input.
    :param sent: events delivered (answered 2xx).
    :param rejected: events that broke a rule and were not sent.
    :param failed: events not delivered (retries ran out, a status that is not retried, or an earlier event of the same
        customer failed).
    :param retried: retries by cause: the HTTP status as a string (``"429"``, ``"503"``) or ``"connection"``.
    :param duration_s: wall-clock seconds.
    :param events_per_second: ``sent / duration_s``.
    :param peak_concurrency: the most requests in flight at once.
    :param samples: up to 20 rejected/failed events: ``index``, ``key`` (redacted ``distinct_id``), ``status``, ``reasons``.
    """

    seen: int = 0
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    retried: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    events_per_second: float = 0.0
    peak_concurrency: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-serialisable data (counts and redacted keys only)."""
        return asdict(self)

    def summary_line(self) -> str:
        """One line for logs, e.g. ``Bluecore delivery: 1000 seen, 990 sent, 4 rejected, 6 failed, ...``."""
        retried = sum(self.retried.values())
        causes = ", ".join(f"{k}: {v}" for k, v in sorted(self.retried.items()))
        return (
            f"Bluecore delivery: {self.seen} seen, {self.sent} sent, {self.rejected} rejected, {self.failed} failed, "
            f"{retried} retried{f' ({causes})' if causes else ''} in {self.duration_s:.1f} s "
            f"({self.events_per_second:.0f} events/s, peak concurrency {self.peak_concurrency})"
        )


class _Item:
    """An event read and valid, between being read and being finished."""

    __slots__ = ("attempts", "body", "event", "index", "key")

    def __init__(self, index: int, event: Any, key: str, body: bytes) -> None:
        self.index = index
        self.event = event
        self.key = key
        self.body = body
        self.attempts = 0


def usable_distinct_id(event: Any) -> str | None:
    """The ``distinct_id`` of an event that failed validation, when it is usable as a key."""
    props = event.get("properties") if isinstance(event, Mapping) else None
    value = props.get("distinct_id") if isinstance(props, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def rejects_beyond_limit(limit: int | float | None, rejected: int, seen: int, *, final: bool) -> bool:
    """The ``max_rejected`` rule, shared with the operators that count rejects of their own: a count is crossed once
    exceeded; a fraction is checked once ``FRACTION_MIN_SEEN`` events were seen, and at the end (``final``)."""
    if limit is None:
        return False
    if isinstance(limit, int):
        return rejected > limit
    return (final or seen >= FRACTION_MIN_SEEN) and rejected > limit * seen


def _check_args(concurrency: int, max_events_per_second: float | None, max_rejected: int | float | None, progress: float) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise BluecoreConfigError(f"concurrency: must be an integer >= 1, not {concurrency!r}")
    if max_events_per_second is not None and (
        isinstance(max_events_per_second, bool)
        or not isinstance(max_events_per_second, int | float)
        or not max_events_per_second > 0
    ):
        raise BluecoreConfigError(f"max_events_per_second: must be a number > 0 or None, not {max_events_per_second!r}")
    if max_rejected is not None:
        if isinstance(max_rejected, bool) or not isinstance(max_rejected, int | float):
            raise BluecoreConfigError(f"max_rejected: must be an int count or a float fraction, not {max_rejected!r}")
        if isinstance(max_rejected, int) and max_rejected < 0:
            raise BluecoreConfigError(f"max_rejected: a count must be >= 0, not {max_rejected!r}")
        if isinstance(max_rejected, float) and not 0 < max_rejected < 1:
            raise BluecoreConfigError(f"max_rejected: a fraction must be between 0 and 1 (exclusive), not {max_rejected!r}")
    if not progress > 0:
        raise BluecoreConfigError(f"progress_interval: must be > 0 seconds, not {progress!r}")


class _Engine:
    """The state of one delivery run. Everything runs on one event loop, so no locks are needed."""

    def __init__(
        self,
        *,
        transport: Transport,
        defaults: EventDefaults,
        retry: RetryPolicy,
        concurrency: int,
        max_events_per_second: float | None,
        max_rejected: int | float | None,
        on_outcome: Callable[[Outcome], None] | None,
        progress_interval: float,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.transport = transport
        self.defaults = defaults
        self.retry = retry
        self.max_concurrency = concurrency
        self.limit = concurrency
        self.interval = 1.0 / max_events_per_second if max_events_per_second else 0.0
        self.max_rejected = max_rejected
        self.on_outcome = on_outcome
        self.progress_interval = progress_interval
        self.log = logger
        self.window = max(4 * concurrency, 256)
        self.report = DeliveryReport()
        self.loop = asyncio.get_running_loop()

        self.ready: deque[_Item] = deque()
        # distinct_id -> later events of that customer waiting for the one in progress (None while there are none).
        self.waiting: dict[str, deque[_Item] | None] = {}
        # distinct_id -> index of the event of that customer that finally failed.
        self.failed_keys: dict[str, int] = {}
        self.pending = 0  # read and valid, not yet finished
        self.input_done = False
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.idle_workers: deque[asyncio.Future[None]] = deque()
        self.slot_waiters: deque[asyncio.Future[None]] = deque()
        self.space: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.active = 0  # workers holding a concurrency slot
        self.in_flight = 0  # requests on the wire
        self.epoch = 0  # bumped at each decrease, so one wave of 429s halves the limit once
        self.successes = 0  # since the last change of the limit
        self.pause_until = 0.0
        self.next_slot = 0.0
        self.rate_waiters: deque[asyncio.Future[None]] = deque()
        self.rate_timer: asyncio.TimerHandle | None = None
        self.logged_problems = 0
        self.next_notice = 0.0

    # ---- reading -------------------------------------------------------------------------------------------------------------

    async def feed(self, events: Iterator[Any]) -> None:
        """Read, validate and dispatch events until the input ends, ``max_rejected`` is crossed or a fatal error."""
        defaults = self.defaults
        waiting = self.waiting
        failed_keys = self.failed_keys
        report = self.report
        index = -1
        try:
            while self.stop_reason is None and self.fatal is None:
                try:
                    event = next(events)
                except StopIteration:
                    break
                index += 1
                report.seen += 1
                try:
                    prepared = prepare_event(event, defaults)
                except BluecoreValidationError as exc:
                    self.reject(index, event, exc.problems)
                    continue
                key = prepared.distinct_id
                if key in failed_keys:
                    self.finish_unsent(_Item(index, event, key, prepared.body), failed_keys[key])
                    continue
                item = _Item(index, event, key, prepared.body)
                self.pending += 1
                if key in waiting:
                    later = waiting[key]
                    if later is None:
                        waiting[key] = deque((item,))
                    else:
                        later.append(item)
                else:
                    waiting[key] = None
                    self.push(item)
                if self.pending >= self.window:
                    self.space = self.loop.create_future()
                    await self.space
                elif (index & 15) == 15:
                    await asyncio.sleep(0)  # short batches: answers waiting behind validation delay the next request
        finally:
            self.input_done = True
            self.check_done()
        if self.stop_reason is None and isinstance(self.max_rejected, float) and self.rejected_beyond(final=True):
            self.stop_reason = "fraction"

    def reject(self, index: int, event: Any, problems: list[Problem]) -> None:
        self.report.rejected += 1
        reasons = [str(p) for p in problems]
        key = usable_distinct_id(event)
        self.sample(index, key, "rejected", reasons)
        self.emit(Outcome(index, event, "rejected", reasons, key, None, 0))
        if self.stop_reason is None and self.rejected_beyond(final=False):
            self.stop_reason = "limit"

    def rejected_beyond(self, final: bool) -> bool:
        return rejects_beyond_limit(self.max_rejected, self.report.rejected, self.report.seen, final=final)

    # ---- dispatching ---------------------------------------------------------------------------------------------------------

    def push(self, item: _Item, front: bool = False) -> None:
        if front:
            self.ready.appendleft(item)
        else:
            self.ready.append(item)
        while self.idle_workers:
            waiter = self.idle_workers.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def check_done(self) -> None:
        if self.input_done and self.pending == 0 and not self.done.done():
            self.done.set_result(None)

    async def worker(self) -> None:
        ready = self.ready
        while True:
            while not ready:
                waiter = self.loop.create_future()
                self.idle_workers.append(waiter)
                await waiter
            item = ready.popleft()
            await self.acquire_slot()
            try:
                await self.pace()
                await self.attempt(item)
            finally:
                self.release_slot()

    async def acquire_slot(self) -> None:
        while self.active >= self.limit:
            waiter = self.loop.create_future()
            self.slot_waiters.append(waiter)
            await waiter
        self.active += 1

    def release_slot(self) -> None:
        self.active -= 1
        self.wake_slots()

    def wake_slots(self) -> None:
        free = self.limit - self.active
        while free > 0 and self.slot_waiters:
            waiter = self.slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    async def pace(self) -> None:
        """Wait out a global ``Retry-After`` pause and take a slot of the rate limit; a pause that began meanwhile is honoured."""
        while True:
            now = self.loop.time()
            if self.pause_until > now:
                await asyncio.sleep(self.pause_until - now)
            if self.interval:
                await self.rate_slot()
            if self.pause_until <= self.loop.time():
                return

    async def rate_slot(self) -> None:
        """Requests leave one at a time, ``interval`` apart on average, in arrival order.

        Waiters are released one per timer tick rather than each sleeping until a reserved time, so a stalled process cannot
        wake many of them at once: consecutive requests are never closer than half an interval, and never more than one per
        interval on average.
        """
        now = self.loop.time()
        if not self.rate_waiters and now >= self.next_slot:
            self.next_slot = max(self.next_slot + self.interval, now + self.interval / 2)
            return
        waiter = self.loop.create_future()
        self.rate_waiters.append(waiter)
        if self.rate_timer is None:
            self.rate_timer = self.loop.call_at(self.next_slot, self.release_rate_slot)
        await waiter

    def release_rate_slot(self) -> None:
        self.rate_timer = None
        now = self.loop.time()
        while self.rate_waiters:
            waiter = self.rate_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.next_slot = max(self.next_slot + self.interval, now + self.interval / 2)
                break
        if self.rate_waiters:
            self.rate_timer = self.loop.call_at(self.next_slot, self.release_rate_slot)

    # ---- sending -------------------------------------------------------------------------------------------------------------

    async def attempt(self, item: _Item) -> None:
        item.attempts += 1
        epoch = self.epoch
        self.in_flight += 1
        if self.in_flight > self.report.peak_concurrency:
            self.report.peak_concurrency = self.in_flight
        try:
            response = await self.transport.post(item.body)
        except TransportError as exc:
            self.in_flight -= 1
            self.after_error(item, None, None, f"connection error: {exc.reason}")
            return
        self.in_flight -= 1
        status = response.status
        if 200 <= status < 300:
            self.successes += 1
            if self.successes >= self.limit and self.limit < self.max_concurrency:
                self.limit += 1
                self.successes = 0
                self.wake_slots()
            self.finish(item, "delivered", [])
            return
        if status == 429 and epoch == self.epoch:
            self.decrease()
        headers = response.headers
        retry_after = headers.get("Retry-After") or headers.get("retry-after")
        self.after_error(item, status, retry_after, f"HTTP {status}: {redact_emails(response.body_excerpt)}".rstrip(": "))

    def decrease(self) -> None:
        self.epoch += 1
        self.successes = 0
        if self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.notice("Bluecore answered 429: concurrency lowered to %d", self.limit)

    def notice(self, message: str, *args: Any) -> None:
        """A WARNING at most once per progress interval (a struggling API would otherwise flood the log); DEBUG otherwise."""
        now = self.loop.time()
        if now >= self.next_notice:
            self.next_notice = now + self.progress_interval
            self.log.warning(message, *args)
        else:
            self.log.debug(message, *args)

    def after_error(self, item: _Item, status: int | None, retry_after: str | None, reason: str) -> None:
        if not self.retry.should_retry(item.attempts, status):
            if status is None or is_retryable_status(status):
                reason = f"{reason} (gave up after {item.attempts} attempts)"
            self.finish(item, "failed", [reason])
            return
        cause = "connection" if status is None else str(status)
        self.report.retried[cause] = self.report.retried.get(cause, 0) + 1
        delay = self.retry.delay(item.attempts, retry_after)
        if retry_after is not None and parse_retry_after(retry_after) is not None:
            until = self.loop.time() + delay
            if until > self.pause_until:
                self.pause_until = until
                self.notice("Bluecore asked to wait (Retry-After): pausing all requests for %.1f s", delay)
        self.log.debug("Retrying event %d (attempt %d) in %.2f s: %s", item.index, item.attempts, delay, cause)
        self.loop.call_later(delay, self.push, item, True)

    # ---- finishing -----------------------------------------------------------------------------------------------------------

    def finish(self, item: _Item, status: OutcomeStatus, reasons: list[str]) -> None:
        report = self.report
        key = item.key
        if status == "delivered":
            report.sent += 1
        else:
            report.failed += 1
            self.sample(item.index, key, status, reasons)
        self.emit(Outcome(item.index, item.event, status, reasons, key, item.body, item.attempts))
        later = self.waiting.pop(key, None)
        if status == "failed":
            self.failed_keys[key] = item.index
            while later:
                self.pending -= 1
                self.finish_unsent(later.popleft(), item.index)
        elif later:
            self.waiting[key] = later if len(later) > 1 else None
            self.push(later.popleft())
        self.pending -= 1
        # Wake the reader once a quarter of the window is free, so it reads in batches rather than one event per answer.
        if self.space is not None and self.pending <= self.window - (self.window >> 2):
            space, self.space = self.space, None
            if not space.done():
                space.set_result(None)
        self.check_done()

    def finish_unsent(self, item: _Item, failed_index: int) -> None:
        reasons = [f"not sent: an earlier event for this customer failed (index {failed_index})"]
        self.report.failed += 1
        self.sample(item.index, item.key, "failed", reasons)
        self.emit(Outcome(item.index, item.event, "failed", reasons, item.key, item.body, 0))

    def emit(self, outcome: Outcome) -> None:
        if self.on_outcome is None or self.fatal is not None:
            return
        try:
            self.on_outcome(outcome)
        except BaseException as exc:  # the caller's bookkeeping broke: stop at once and let its error surface
            self.fatal = exc
            if not self.done.done():
                self.done.set_result(None)
            if self.space is not None and not self.space.done():
                self.space.set_result(None)

    def sample(self, index: int, key: str | None, status: str, reasons: list[str]) -> None:
        shown = redact(key) if key is not None else None
        if len(self.report.samples) < SAMPLE_LIMIT:
            self.report.samples.append({"index": index, "key": shown, "status": status, "reasons": reasons})
        if self.logged_problems < 10:
            self.logged_problems += 1
            self.log.warning("Event %d (key %s) %s: %s", index, shown, status, "; ".join(reasons))
            if self.logged_problems == 10:
                self.log.warning("Further rejected/failed events are counted in the report, not logged one by one")

    async def progress(self) -> None:
        last_sent, last_at = 0, self.loop.time()
        while True:
            await asyncio.sleep(self.progress_interval)
            now, r = self.loop.time(), self.report
            rate = (r.sent - last_sent) / (now - last_at) if now > last_at else 0.0
            last_sent, last_at = r.sent, now
            self.log.info(
                "Bluecore delivery progress: %d sent, %d rejected, %d failed, %.0f events/s, concurrency %d/%d",
                r.sent,
                r.rejected,
                r.failed,
                rate,
                self.limit,
                self.max_concurrency,
            )

    async def run(self, events: Iterable[Any]) -> None:
        # Workers are created once; the progress task is only a timer.
        tasks = [asyncio.ensure_future(self.worker()) for _ in range(self.max_concurrency)]
        tasks.append(asyncio.ensure_future(self.progress()))
        try:
            input_error: BaseException | None = None
            try:
                await self.feed(iter(events))
            except Exception as exc:  # the input itself failed (e.g. a database cursor): finish what was read, then raise
                input_error = exc
            await self.done
            if self.fatal is not None:
                raise self.fatal
            if input_error is not None:
                raise input_error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _rejection_error(report: DeliveryReport, max_rejected: int | float) -> BluecoreValidationError:
    problems: list[Problem] = []
    for sample in report.samples:
        if sample["status"] == "rejected":
            for reason in sample["reasons"]:
                field_name, _, rule = reason.partition(": ")
                problem = Problem(field_name, rule)
                if problem not in problems:
                    problems.append(problem)
    limit = f"{max_rejected:.0%} of events seen" if isinstance(max_rejected, float) else f"{max_rejected} events"
    message = (
        f"{report.rejected} of {report.seen} events seen were rejected, beyond max_rejected ({limit}); reading stopped and the "
        f"{report.sent} valid events read were sent ({report.failed} failed). Fix the events or raise max_rejected. "
        f"First reasons"
    )
    return BluecoreValidationError(message, problems[:5], report=report)


async def deliver_async(
    events: Iterable[Any],
    *,
    url: str,
    defaults: EventDefaults,
    retry: RetryPolicy,
    user_agent: str,
    timeout: float = 10,
    connect_timeout: float = 5,
    concurrency: int = 16,
    max_events_per_second: float | None = None,
    max_rejected: int | float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    progress_interval: float = 10.0,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    transport: Transport | None = None,
) -> DeliveryReport:
    """:func:`deliver` for callers that already run an event loop. Same parameters, same result."""
    _check_args(concurrency, max_events_per_second, max_rejected, progress_interval)
    log = logger or _LOG
    if transport is None:
        transport = AiohttpTransport(
            url, user_agent=user_agent, concurrency=concurrency, timeout=timeout, connect_timeout=connect_timeout
        )
    engine = _Engine(
        transport=transport,
        defaults=defaults,
        retry=retry,
        concurrency=concurrency,
        max_events_per_second=max_events_per_second,
        max_rejected=max_rejected,
        on_outcome=on_outcome,
        progress_interval=progress_interval,
        logger=log,
    )
    started = time.monotonic()
    try:
        try:
            await engine.run(events)
        finally:
            await transport.close()
    finally:
        report = engine.report
        report.duration_s = round(time.monotonic() - started, 3)
        report.events_per_second = round(report.sent / report.duration_s, 1) if report.duration_s > 0 else 0.0
        log.info("%s", report.summary_line())
    if engine.stop_reason is not None and max_rejected is not None:
        raise _rejection_error(report, max_rejected)
    return report


def deliver(
    events: Iterable[Any],
    *,
    url: str,
    defaults: EventDefaults,
    retry: RetryPolicy,
    user_agent: str,
    timeout: float = 10,
    connect_timeout: float = 5,
    concurrency: int = 16,
    max_events_per_second: float | None = None,
    max_rejected: int | float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    progress_interval: float = 10.0,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    transport: Transport | None = None,
) -> DeliveryReport:
    """Send every event of ``events`` to the Events API; return what became of them.

    Runs its own event loop in the calling thread, so it is called from ordinary (synchronous) code such as an Airflow task;
    from a coroutine use :func:`deliver_async`. ``on_outcome`` runs in the calling thread.

    :param events: any iterable of event dicts (``{"event": ..., "properties": {...}}``); read lazily, never materialised.
    :param url: the endpoint URL (``BluecoreConfig.endpoint_url``).
    :param defaults: namespace, client, device and size limit applied to every event.
    :param retry: which answers are retried, how often and how long to wait.
    :param user_agent: the ``User-Agent`` header.
    :param timeout: seconds to wait for each read of an answer.
    :param connect_timeout: seconds to wait for a connection.
    :param concurrency: the most requests in flight at once (also the connection pool size).
    :param max_events_per_second: a rate limit shared by all workers (requests, retries included), or None for no limit.
    :param max_rejected: how many rejected events are tolerated: an int count, or a float fraction (0 < f < 1) of the events
        seen (checked once 100 events were seen, and at the end). Once crossed, reading stops, the events already read are
        sent and :class:`~airflow_provider_bluecore.exceptions.BluecoreValidationError` is raised with ``report`` set.
        None tolerates any number (they are reported).
    :param on_outcome: called once per input event with its :class:`Outcome`, in the calling thread. If it raises, delivery
        stops at once (requests in flight are abandoned) and its exception propagates.
    :param progress_interval: seconds between progress log lines.
    :param logger: where progress, warnings and the summary go (default: this module's logger).
    :param transport: how to reach the endpoint (default: an :class:`AiohttpTransport`). It is closed when the call ends.
    :raises BluecoreValidationError: ``max_rejected`` was crossed (``.report`` holds the report).
    :raises BluecoreConfigError: an argument is out of range.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise BluecoreConfigError(
            "deliver() runs its own event loop and cannot be called from a coroutine; "
            "use `await deliver_async(...)` or `await asyncio.to_thread(deliver, ...)`"
        )
    return asyncio.run(
        deliver_async(
            events,
            url=url,
            defaults=defaults,
            retry=retry,
            user_agent=user_agent,
            timeout=timeout,
            connect_timeout=connect_timeout,
            concurrency=concurrency,
            max_events_per_second=max_events_per_second,
            max_rejected=max_rejected,
            on_outcome=on_outcome,
            progress_interval=progress_interval,
            logger=logger,
            transport=transport,
        )
    )
