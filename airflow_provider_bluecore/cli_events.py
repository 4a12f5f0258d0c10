"""``bluecore validate`` and ``bluecore send``: files of events, checked or delivered (see :mod:`airflow_provider_bluecore.cli`).

A file of events is either JSON lines (one event object per line; blank lines are skipped) or one JSON array of event
objects; the first non-blank character decides (``[`` means an array). Both are read as a stream, never loaded whole, so a
file of any size runs in bounded memory. Problems are reported by line number (JSON lines) or array index (0-based).
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any, TextIO

from airflow_provider_bluecore.cli import EXIT_OK, EXIT_PROBLEMS, CommandError, add_command, whole_number
from airflow_provider_bluecore.events import DEFAULT_MAX_EVENT_BYTES

__all__ = ["Entry", "EventFile", "add_parser", "open_event_file", "run_send", "run_validate"]

_CHUNK = 64 * 1024
# A single array element larger than this cannot be a valid event (they are limited to far less); stop looking for its end.
_MAX_ELEMENT_CHARS = 4 * 1024 * 1024


# -- reading event files -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One item of an event file: where it is, and the parsed event or why it could not be parsed.

    :param number: the line number (1-based) for JSON lines, the array index (0-based) for a JSON array.
    :param kind: ``"line"``, ``"index"``, or ``"file"`` for a problem with the file as a whole (not UTF-8).
    :param event: the parsed JSON value (None when ``error`` is set).
    :param error: why the item is not valid JSON, or None.
    :param line: the line the item starts on, when known (for array items with an error).
    """

    number: int
    kind: str
    event: Any = None
    error: str | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        """``"line 12"`` or ``"index 3"`` (with the line for unreadable array items)."""
        if self.kind == "file":
            return "the file"
        text = f"{self.kind} {self.number}"
        return f"{text} (line {self.line})" if self.line is not None and self.kind == "index" else text


def _describe(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON: {exc.msg} (column {exc.colno})"


class EventFile:
    """Events read lazily from a binary stream holding JSON lines or a JSON array.

    :param stream: a binary stream (a file opened ``"rb"``, ``sys.stdin.buffer``).
    :param name: how to name the file in messages.
    :param size: the size in bytes when known (for a progress bar).
    """

    def __init__(self, stream: IO[bytes], name: str, size: int | None = None) -> None:
        self.name = name
        self.size = size
        self._raw = stream
        self._text: TextIO = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline=None)
        self.is_array = self._starts_with_bracket()

    def _starts_with_bracket(self) -> bool:
        peek = getattr(self._raw, "peek", None)
        head: bytes = peek(_CHUNK) if peek is not None else b""
        head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        return head[:1] == b"["

    def bytes_read(self) -> int | None:
        """How far the underlying file has been read (read-ahead included), or None when unknown (a pipe)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return None

    def __iter__(self) -> Iterator[Entry]:
        try:
            yield from (self._array() if self.is_array else self._lines())
        except UnicodeDecodeError as exc:
            yield Entry(0, "file", error=f"not UTF-8 text ({exc.reason}); nothing after this point was read")

    def _lines(self) -> Iterator[Entry]:
        for number, line in enumerate(self._text, 1):
            if not line.strip():
                continue
            try:
                yield Entry(number, "line", json.loads(line))
            except json.JSONDecodeError as exc:
                yield Entry(number, "line", error=_describe(exc))

    def _array(self) -> Iterator[Entry]:
        decoder = json.JSONDecoder()
        text, buf, pos, eof, lines_before = self._text, "", 0, False, 0

        def fill() -> bool:
            nonlocal buf, pos, eof, lines_before
            chunk = text.read(_CHUNK)
            lines_before += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + chunk, 0
            eof = not chunk
            return bool(chunk)

        def skip_space() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return buf[pos] if pos < len(buf) else ""

        def line_at(at: int) -> int:
            return lines_before + buf.count("\n", 0, at) + 1

        skip_space()
        pos += 1  # the "[" seen by _starts_with_bracket
        index, expect_value = 0, True
        while True:
            char = skip_space()
            if char == "":
                yield Entry(index, "index", error="the file ends before the array is closed with ']'", line=line_at(pos))
                return
            if char == "]" and (index == 0 or not expect_value):
                pos += 1
                break
            if not expect_value:
                if char != ",":
                    yield Entry(index, "index", error=f"expected ',' or ']' after index {index - 1}", line=line_at(pos))
                    return
                pos += 1
                expect_value = True
                continue
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if not eof and len(buf) - pos < _MAX_ELEMENT_CHARS and fill():
                        continue
                    yield Entry(index, "index", error=f"not valid JSON: {exc.msg}", line=line_at(exc.pos))
                    return
                if end == len(buf) and not eof and fill():
                    continue  # a number cut by the chunk boundary would parse short
                break
            yield Entry(index, "index", value)
            pos, index, expect_value = end, index + 1, False
        if skip_space() != "":
            yield Entry(index, "index", error="unexpected data after the closing ']'", line=line_at(pos))


@contextmanager
def open_event_file(path: str) -> Iterator[EventFile]:
    """Open ``path`` (``-`` for standard input) as an :class:`EventFile`; a missing file is a :class:`CommandError`."""
    if path == "-":
        yield EventFile(sys.stdin.buffer, "<stdin>")
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's block
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        size = os.fstat(stream.fileno()).st_size
        yield EventFile(stream, path, size if size > 0 else None)
    finally:
        stream.close()


# -- validate ------------------------------------------------------------------------------------------------------------------

VALIDATE_DESCRIPTION = """
    Check a file of events against the provider's rules without sending anything (no Airflow, no network).

    FILE holds JSON lines (one event per line) or a JSON array of events; - reads standard input. Each invalid event is
    reported with its line number (or array index) and every reason, each naming the field and the rule. Exit status: 0 when
    every event is valid, 1 when any is invalid or unreadable, 2 for a usage error.

    Tokens: with --namespace, an event's properties.token must equal it (a missing token is fine: the connection fills it in).
    Without --namespace, tokens are accepted as given.
"""


def _add_validate(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "validate",
        help="check a file of events (JSON lines or a JSON array) against the provider's rules",
        description=VALIDATE_DESCRIPTION,
        examples=[
            "bluecore validate events.jsonl",
            "bluecore validate --namespace bluestore export.json",
            "my-export-job | bluecore validate --json - > problems.jsonl",
        ],
    )
    parser.add_argument("file", metavar="FILE", help="the events: JSON lines or a JSON array; - for standard input")
    parser.add_argument("--namespace", metavar="NS", help="the namespace every event's token must match")
    parser.add_argument(
        "--max-event-bytes", type=whole_number(1), default=DEFAULT_MAX_EVENT_BYTES, metavar="N", help="largest event accepted"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per invalid event instead of text")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary line")
    parser.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Check every event of ``args.file``; print the invalid ones and a summary; 1 when any is invalid."""
    from airflow_provider_bluecore.sandbox.rules import check_event

    checked = invalid = unreadable = 0
    out = sys.stdout
    with open_event_file(args.file) as source:
        for entry in source:
            if entry.error is not None:
                unreadable += 1
                problems = [entry.error]
                name = None
            else:
                checked += 1
                _, found = check_event(entry.event, namespace=args.namespace, max_event_bytes=args.max_event_bytes)
                if not found:
                    continue
                invalid += 1
                problems = [str(p) for p in found]
                raw_name = entry.event.get("event") if isinstance(entry.event, dict) else None
                name = raw_name if isinstance(raw_name, str) and raw_name else None
            if args.quiet:
                continue
            if args.json:
                record = {entry.kind: entry.number, "where": entry.where, "event": name, "problems": problems}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                label = f"{entry.where}: {name}" if name else entry.where
                count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
                out.write(f"{label}: {count}\n" + "".join(f"    {p}\n" for p in problems))
    valid = checked - invalid
    summary = f"{source.name}: {checked:,} events checked, {valid:,} valid, {invalid:,} invalid"
    if unreadable:
        summary += f", {unreadable:,} unreadable (not valid JSON)"
    print(summary, file=sys.stderr if args.json else out)
    return EXIT_PROBLEMS if invalid or unreadable else EXIT_OK


# -- send ----------------------------------------------------------------------------------------------------------------------

SEND_DESCRIPTION = """
    Send a file of events to Bluecore through the provider's delivery engine, exactly as BluecoreHook.send_events does in a
    task: the connection's namespace, retries, concurrency and rate limit, events of one customer in file order.

    FILE holds JSON lines (one event per line) or a JSON array of events; - reads standard input. The file is streamed, never
    loaded whole. Invalid events are rejected (not sent) and reported with their line number (or array index) and reasons;
    the rest are sent. A progress bar is drawn on standard error when it is a terminal, a progress line every few seconds
    otherwise, then a summary.

    The connection is looked up the way Airflow does outside a task: AIRFLOW_CONN_<CONN_ID> environment variables and
    secrets backends (on Airflow 2 also the metadata database). Exit status: 0 when every event was delivered, 1 when any
    was rejected, failed or unreadable, 2 for a usage or connection error.
"""


def _max_rejected(text: str) -> int | float:
    """``10`` (a count), ``0.05`` or ``5%`` (a fraction of the events seen)."""
    try:
        if text.endswith("%"):
            value: int | float = float(text[:-1]) / 100
        elif any(c in text for c in ".eE"):
            value = float(text)
        else:
            value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count (10) nor a fraction (0.05 or 5%)") from None
    if isinstance(value, float) and not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a fraction must be between 0 and 1 (exclusive)")
    if isinstance(value, int) and value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a count must not be negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _add_send(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "send",
        help="send a file of events through an Airflow connection, with progress and a summary",
        description=SEND_DESCRIPTION,
        examples=[
            "bluecore sandbox --port 8765 &",
            """export AIRFLOW_CONN_BLUECORE_SANDBOX='{"conn_type": "bluecore", "login": "bluestore", """
            """"host": "http://127.0.0.1:8765"}'""",
            "bluecore send events.jsonl --conn-id bluecore_sandbox",
            "bluecore send export.json --conn-id bluecore_default --max-events-per-second 200 --max-rejected 1%",
        ],
    )
    parser.add_argument("file", metavar="FILE", help="the events: JSON lines or a JSON array; - for standard input")
    parser.add_argument("--conn-id", required=True, metavar="ID", help="the Airflow connection (type bluecore) to send through")
    parser.add_argument("--concurrency", type=whole_number(1), metavar="N", help="requests in flight (default: the connection's)")
    parser.add_argument(
        "--max-events-per-second", type=_positive_float, metavar="RATE", help="rate limit (default: the connection's)"
    )
    parser.add_argument(
        "--max-rejected",
        type=_max_rejected,
        metavar="N|F",
        help="stop reading once more events than this were rejected: a count (10) or a fraction (0.05, 5%%); default: no limit",
    )
    parser.add_argument("--show", type=int, default=20, metavar="N", help="print at most N rejected/failed events one by one")
    parser.add_argument(
        "--progress-every",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="progress line interval when not a terminal",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (the delivery report)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the engine's progress and retry messages")
    parser.set_defaults(handler=run_send)


def add_parser(subparsers: Any) -> None:
    """Add ``bluecore validate`` and ``bluecore send`` to the ``bluecore`` parser."""
    _add_validate(subparsers)
    _add_send(subparsers)


class _Locator:
    """Maps an event's position in what was sent to its line (or array index) without keeping one number per event.

    Only the places where the offset between the two changes (blank or unreadable lines) are remembered.
    """

    def __init__(self) -> None:
        self._starts: list[int] = [0]
        self._offsets: list[int] = [0]

    def note(self, index: int, number: int) -> None:
        offset = number - index
        if offset != self._offsets[-1]:
            self._starts.append(index)
            self._offsets.append(offset)

    def number(self, index: int) -> int:
        return index + self._offsets[bisect.bisect_right(self._starts, index) - 1]


class _Progress:
    """A progress bar on a terminal (redrawn in place), or a plain line every ``every`` seconds on anything else.

    Other output goes through :meth:`print` so it never lands in the middle of the bar.
    """

    def __init__(self, stream: TextIO, *, size: int | None, position: Callable[[], int | None], every: float) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.size = size
        self.position = position
        self.every = 0.2 if self.tty else every
        self.sent = self.rejected = self.failed = self.unreadable = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drawn = False
        self._thread = threading.Thread(target=self._loop, name="bluecore-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty:
            with self._lock:
                self._draw(final=True)

    def _status(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        parts = [f"{self.sent:,} sent", f"{self.rejected:,} rejected", f"{self.failed:,} failed"]
        if self.unreadable:
            parts.append(f"{self.unreadable:,} unreadable")
        return " · ".join(parts) + f" · {self.sent / elapsed:,.0f} events/s"

    def _fraction(self) -> float | None:
        position = self.position()
        if not self.size or position is None:
            return None
        return min(1.0, position / self.size)

    def _draw(self, final: bool = False) -> None:
        fraction = self._fraction()
        bar = ""
        if fraction is not None:
            filled = int(fraction * 24)
            bar = f"{fraction:4.0%} [{'#' * filled}{'.' * (24 - filled)}] "
        self.stream.write(f"\r\x1b[K{bar}{self._status()}" + ("\n" if final else ""))
        self.stream.flush()
        self._drawn = not final

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                if self.tty:
                    self._draw()
                else:
                    fraction = self._fraction()
                    read = f" ({fraction:.0%} of the file read)" if fraction is not None else ""
                    self.stream.write(f"progress: {self._status().replace(' · ', ', ')}{read}\n")
                    self.stream.flush()

    def print(self, text: str, stream: TextIO | None = None) -> None:
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False
            target = stream or sys.stdout
            target.write(text + "\n")
            target.flush()


class _ProgressLogHandler(logging.Handler):
    """Log records printed through the progress display (standard error), without the engine's per-event lines."""

    # The engine logs its first rejected/failed events itself; the CLI prints them with line numbers instead.
    _REDUNDANT = (
        "Event %d (key %s) %s: %s",
        "Further rejected/failed events are counted in the report, not logged one by one",
    )

    def __init__(self, progress: _Progress) -> None:
        super().__init__()
        self.progress = progress
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in self._REDUNDANT:
            return
        self.progress.print(self.format(record), stream=sys.stderr)


@contextmanager
def _provider_logging(progress: _Progress, verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("airflow_provider_bluecore")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    handler = _ProgressLogHandler(progress)
    logger.handlers = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False  # Airflow may have configured the root logger too: print once
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]


@contextmanager
def _airflow_logs_to_stderr() -> Iterator[None]:
    """Airflow points the root logger at standard output; standard output is the command's result (``--json``)."""
    root = logging.getLogger()
    saved = list(root.handlers)
    for handler in saved:
        if getattr(handler, "stream", None) is sys.stdout:
            replacement = logging.StreamHandler(sys.stderr)
            replacement.setLevel(handler.level)
            replacement.setFormatter(handler.formatter)
            root.removeHandler(handler)
            root.addHandler(replacement)
    try:
        yield
    finally:
        root.handlers = saved


def run_send(args: argparse.Namespace) -> int:
    """Send every event of ``args.file`` through ``BluecoreHook(args.conn_id).send_events``; print problems and a summary."""
    from airflow_provider_bluecore.exceptions import BluecoreConfigError, BluecoreValidationError

    with ExitStack() as stack:
        source = stack.enter_context(open_event_file(args.file))  # a missing file is reported before the slow import
        from airflow_provider_bluecore.hooks.bluecore import BluecoreHook  # imports Airflow: only here

        stack.enter_context(_airflow_logs_to_stderr())
        hook = BluecoreHook(bluecore_conn_id=args.conn_id)
        try:
            config = hook.config
        except BluecoreConfigError as exc:
            raise CommandError(f"connection {args.conn_id!r} is misconfigured: {exc}") from None
        except Exception as exc:  # Airflow's "not defined" and secrets-backend errors have no common base worth naming
            raise CommandError(f"cannot load connection {args.conn_id!r}: {exc}") from None

        progress = _Progress(sys.stderr, size=source.size, position=source.bytes_read, every=args.progress_every)
        locator = _Locator()
        shown = 0
        kind = "index" if source.is_array else "line"

        def show(where: str, status: str, reasons: list[str]) -> None:
            nonlocal shown
            shown += 1
            if shown <= args.show:
                progress.print(f"{where}: {status}: {'; '.join(reasons)}")
            elif shown == args.show + 1:
                progress.print(f"... further rejected/failed events are only counted (--show {args.show})")

        def events() -> Iterator[Any]:
            index = 0
            for entry in source:
                if entry.error is not None:
                    progress.unreadable += 1
                    show(entry.where, "unreadable", [entry.error])
                    continue
                locator.note(index, entry.number)
                index += 1
                yield entry.event

        def on_outcome(outcome: Any) -> None:
            if outcome.status == "delivered":
                progress.sent += 1
                return
            if outcome.status == "rejected":
                progress.rejected += 1
            else:
                progress.failed += 1
            show(f"{kind} {locator.number(outcome.index)}", outcome.status, outcome.reasons)

        stopped: str | None = None
        progress.start()
        try:
            with _provider_logging(progress, args.verbose):
                report = hook.send_events(
                    events(),
                    concurrency=args.concurrency,
                    max_events_per_second=args.max_events_per_second,
                    max_rejected=args.max_rejected,
                    on_outcome=on_outcome,
                )
        except BluecoreValidationError as exc:
            if exc.report is None:
                raise
            report, stopped = exc.report, str(exc)
        except BluecoreConfigError as exc:
            raise CommandError(str(exc)) from None
        finally:
            progress.stop()
            hook.close()

    unreadable = progress.unreadable
    if args.json:
        print(json.dumps({"file": source.name, "unreadable": unreadable, "stopped": stopped, "report": report.as_dict()}))
    else:
        _print_summary(source.name, config.namespace, config.endpoint_url, report, unreadable, stopped)
    return EXIT_PROBLEMS if report.rejected or report.failed or unreadable or stopped else EXIT_OK


def _print_summary(name: str, namespace: str, url: str, report: Any, unreadable: int, stopped: str | None) -> None:
    causes = ", ".join(f"{k}: {v:,}" for k, v in sorted(report.retried.items()))
    rows = [
        ("delivered", report.sent, "answered 2xx"),
        ("rejected", report.rejected, "invalid, not sent" if report.rejected else ""),
        ("failed", report.failed, "not delivered" if report.failed else ""),
    ]
    if unreadable:
        rows.append(("unreadable", unreadable, "not valid JSON, not sent"))
    rows.append(("retried", sum(report.retried.values()), causes))
    lines = [f"{name} -> {url} (namespace {namespace})"]
    lines += [f"  {label:<11}{count:>10,}  {note}".rstrip() for label, count, note in rows]
    lines.append(
        f"  {report.seen + unreadable:,} read in {report.duration_s:.1f} s, {report.events_per_second:,.0f} events/s, "
        f"peak concurrency {report.peak_concurrency}"
    )
    if stopped:
        lines.append(f"Stopped early: {stopped}")
    print("\n".join(lines), flush=True)
