"""``bluecore sandbox``: run the local Events API stand-in until Ctrl-C (see :mod:`airflow_provider_bluecore.cli`)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
import threading
from typing import Any

from airflow_provider_bluecore.cli import EXIT_OK, EXIT_PROBLEMS, CommandError, add_command, whole_number
from airflow_provider_bluecore.events import DEFAULT_MAX_EVENT_BYTES

__all__ = ["add_parser", "run"]

DESCRIPTION = """
    Serve a local stand-in for Bluecore's Events API, to develop and check a sync before it touches real customers.

    POST /api/track/mobile/v1 answers 202 for an event the provider's rules accept and 400 with every reason otherwise (the
    same rules as the provider, so stricter than Bluecore on purpose). Accepted events are kept in SQLite. The page at / shows
    totals per event, the latest events and rejections, a customer's timeline (following identify links) and an audience
    check; /api/stats, /api/events, /api/customer?q=, /api/audience?event=&min=&days= serve the same as JSON.

    Point a connection at it (plain http is allowed for loopback hosts):
      AIRFLOW_CONN_BLUECORE_DEFAULT='{"conn_type": "bluecore", "login": "bluestore", "host": "http://127.0.0.1:8765"}'

    Without --db the events live in a temporary database deleted on exit; with --db they are kept (and reused) there.
    Fault injection (--latency, --error-rate, --throttle-rate, --drop-rate) rehearses what a sync does when Bluecore is slow,
    failing, throttling or dropping connections. Faulted events are not stored; the provider retries them.
"""
EXAMPLES = [
    "bluecore sandbox",
    "bluecore sandbox --port 9000 --namespace bluestore --db sandbox.sqlite3",
    "bluecore sandbox --latency 0.05 --error-rate 0.05 --throttle-rate 10% --retry-after 2 --drop-rate 0.01 --seed 7",
]


def _share(text: str) -> float:
    """A share between 0 and 1, written ``0.1`` or ``10%``."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share (write 0.1 or 10%)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1 (0% and 100%)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 3600 seconds")
    return value


def add_parser(subparsers: Any) -> None:
    """Add ``bluecore sandbox`` to the ``bluecore`` parser."""
    parser = add_command(
        subparsers,
        "sandbox",
        help="run a local stand-in for Bluecore's Events API, with a web page to look at what arrived",
        description=DESCRIPTION,
        examples=EXAMPLES,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; keep it on loopback (no authentication)")
    parser.add_argument("--port", type=whole_number(0), default=8765, help="port to listen on; 0 picks a free one")
    parser.add_argument("--db", metavar="PATH", help="SQLite file keeping accepted events (default: a temporary file)")
    parser.add_argument("--reset", action="store_true", help="empty the --db file before serving")
    parser.add_argument("--namespace", metavar="NS", help="accept only events whose token is NS (default: any non-empty token)")
    parser.add_argument(
        "--max-event-bytes", type=whole_number(1), default=DEFAULT_MAX_EVENT_BYTES, metavar="N", help="largest event accepted"
    )
    faults = parser.add_argument_group("fault injection (applied to POST /api/track/mobile/v1 only)")
    faults.add_argument("--latency", type=_seconds, default=0.0, metavar="SECONDS", help="added before answering each event")
    faults.add_argument("--error-rate", type=_share, default=0.0, metavar="SHARE", help="share of events answered 500")
    faults.add_argument(
        "--throttle-rate", type=_share, default=0.0, metavar="SHARE", help="share of events answered 429 with Retry-After"
    )
    faults.add_argument(
        "--retry-after", type=whole_number(0), default=1, metavar="SECONDS", help="the Retry-After sent with a 429"
    )
    faults.add_argument(
        "--drop-rate", type=_share, default=0.0, metavar="SHARE", help="share of connections closed without an answer"
    )
    faults.add_argument("--seed", type=int, metavar="N", help="seed of the fault draws, for a reproducible run")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the sandbox's own messages")
    parser.set_defaults(handler=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; print where, then a short summary when stopping."""
    from airflow_provider_bluecore.sandbox.server import SandboxServer

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        sandbox = SandboxServer(
            args.host,
            args.port,
            db_path=args.db,
            namespace=args.namespace,
            reset=args.reset,
            latency=args.latency,
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            retry_after=args.retry_after,
            drop_rate=args.drop_rate,
            seed=args.seed,
            max_event_bytes=args.max_event_bytes,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        sandbox.start()
    except OSError as exc:
        print(f"bluecore sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_PROBLEMS

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    connection = json.dumps({"conn_type": "bluecore", "login": args.namespace or "bluestore", "host": sandbox.url})
    where = f"{sandbox.db_path} (temporary, deleted on exit; --db PATH keeps events)" if sandbox.temporary else sandbox.db_path
    namespace = f"{args.namespace} (enforced)" if args.namespace else "any (each event is checked against its own token)"
    lines = [
        f"Bluecore sandbox listening on {sandbox.url}",
        f"  Events API  POST {sandbox.endpoint_url}",
        f"  Web page    {sandbox.url}/",
        f"  Namespace   {namespace}",
        f"  Database    {where}",
        f"  Faults      {sandbox.faults.describe()}",
        f"  Connection  AIRFLOW_CONN_BLUECORE_DEFAULT='{connection}'",
        "Press Ctrl-C to stop.",
    ]
    if not _is_loopback(args.host):
        lines.insert(1, "  WARNING     listening beyond loopback: anyone who can reach this port can read the events")
    print("\n".join(lines), flush=True)
    try:
        while not stop.wait(0.5):
            pass
        stats = sandbox.store.stats()
    finally:
        sandbox.stop()
    print(f"Stopped: {stats['accepted']} events accepted, {stats['rejected']} rejected.", flush=True)
    return EXIT_OK
