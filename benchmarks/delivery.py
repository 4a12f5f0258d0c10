"""Benchmarks of the delivery engine behind ``BluecoreHook.send_events`` (issue 3).

1. **Instant server.** :func:`deliver` events/s against a hand-written loop over one ``requests.Session`` (``session.post(url,
   json=event)``, the common pattern), both sending to the same fast local server, alternated, best of ``rounds`` each.
   Target: >= 2x.
2. **50 ms server.** :func:`deliver` at concurrency 64 against a server that answers every request after 50 ms: the ideal is
   64 / 0.05 s = 1,280 events/s. Target: >= 90 % of it, end to end (connection set-up and shutdown included); best of
   ``rounds``.
3. **Memory.** Peak RSS (``ru_maxrss``) of a fresh interpreter sending 1,000,000 generated events against one sending 100,000.
   Target: <= 1.2x. By default the events go through the whole engine (generation, validation, per-customer ordering,
   windowing, retries bookkeeping, outcomes) to an in-process transport that answers 202 at once, since a million real POSTs
   take minutes on a small machine; ``--rss-http`` sends them to the local HTTP server instead (aiohttp included).

Every server is :mod:`benchmarks._server` in its own process; every HTTP run checks that all events arrived. Run alone with
``python -m benchmarks.delivery [--quick] [--rss-http]``; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import report

REPO = Path(__file__).resolve().parent.parent
ENDPOINT = "/api/track/mobile/v1"
TARGET_SPEEDUP = 2.0
LATENCY, LATENCY_CONCURRENCY, TARGET_OF_IDEAL = 0.05, 64, 0.9
RSS_SMALL, RSS_LARGE, TARGET_RSS = 100_000, 1_000_000, 1.2


def events(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    """Generated customer_patch events, one customer each (what a warehouse sync typically sends)."""
    for i in range(start, start + count):
        yield {
            "event": "customer_patch",
            "properties": {
                "distinct_id": f"customer-{i}",
                "customer": {"first_name": f"Name{i}", "tier": ("gold", "silver", "bronze")[i % 3], "points": i},
            },
        }


def _deliver(url: str | None, count: int, concurrency: int = 16, start: int = 0) -> float:
    """Send ``count`` events with :func:`deliver` (to ``url``, or an instant in-process transport); return the seconds taken."""
    from airflow_provider_bluecore.delivery import TransportResponse, deliver
    from airflow_provider_bluecore.events import EventDefaults
    from airflow_provider_bluecore.retry import RetryPolicy

    class Instant:
        async def post(self, body: bytes) -> TransportResponse:
            await asyncio.sleep(0)
            return TransportResponse(202, {}, "")

        async def close(self) -> None:
            return None

    started = time.perf_counter()
    report = deliver(
        events(count, start),
        url=f"{url}{ENDPOINT}" if url else "http://in-process",
        defaults=EventDefaults("bench"),
        retry=RetryPolicy(),
        user_agent="airflow-provider-bluecore-benchmark",
        concurrency=concurrency,
        transport=None if url else Instant(),
    )
    seconds = time.perf_counter() - started
    if report.sent != count:
        raise RuntimeError(f"only {report.sent} of {count} events were delivered: {report.summary_line()}")
    return seconds


def _requests_loop(url: str, count: int, start: int = 0) -> float:
    """The common hand-written pattern: one requests.Session, one POST per event, in a loop."""
    import requests

    started = time.perf_counter()
    with requests.Session() as session:
        for event in events(count, start):
            session.post(f"{url}{ENDPOINT}", json=event, timeout=(5, 10)).raise_for_status()
    return time.perf_counter() - started


def instant_server(quick: bool = False, rounds: int = 2) -> dict[str, Any]:
    """deliver() vs a requests.Session loop, same fast server, alternated; best of ``rounds`` each."""
    from benchmarks._server import posts_received, running_server

    loop_n, deliver_n = (500, 2_000) if quick else (2_000, 12_000)
    with running_server() as url:
        _requests_loop(url, 50)  # warm up: imports, first connections
        _deliver(url, 200)
        loop_s, deliver_s = [], []
        for _ in range(rounds):
            loop_s.append(_requests_loop(url, loop_n))
            deliver_s.append(_deliver(url, deliver_n))
        if posts_received(url) != 250 + rounds * (loop_n + deliver_n):
            raise RuntimeError("the server did not receive every event")
    loop_eps, deliver_eps = loop_n / min(loop_s), deliver_n / min(deliver_s)
    return {"loop_eps": loop_eps, "deliver_eps": deliver_eps, "speedup": deliver_eps / loop_eps}


def slow_server(quick: bool = False, rounds: int = 3) -> dict[str, Any]:
    """deliver() at concurrency 64 against a server answering after 50 ms; best of ``rounds``, end to end."""
    from benchmarks._server import posts_received, running_server

    count = LATENCY_CONCURRENCY * (10 if quick else 100)
    with running_server(delay=LATENCY) as url:
        _deliver(url, LATENCY_CONCURRENCY, concurrency=LATENCY_CONCURRENCY)  # warm up: imports
        seconds = min(_deliver(url, count, concurrency=LATENCY_CONCURRENCY) for _ in range(rounds))
        if posts_received(url) != LATENCY_CONCURRENCY + rounds * count:
            raise RuntimeError("the server did not receive every event")
    ideal = LATENCY_CONCURRENCY / LATENCY
    return {"count": count, "eps": count / seconds, "ideal": ideal, "of_ideal": count / seconds / ideal}


def _rss_child(count: int, http: bool) -> dict[str, Any]:
    """In a fresh interpreter: send ``count`` events and report the process's peak RSS."""
    command = [sys.executable, "-m", "benchmarks.delivery", "--rss-child", str(count)] + (["--rss-http"] if http else [])
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"RSS child for {count} events failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def memory(quick: bool = False, http: bool = False) -> dict[str, Any]:
    """Peak RSS sending RSS_LARGE events against RSS_SMALL, each in a fresh process."""
    scale = 10 if quick else 1
    small, large = _rss_child(RSS_SMALL // scale, http), _rss_child(RSS_LARGE // scale, http)
    return {"small": small, "large": large, "ratio": large["peak_rss_mb"] / small["peak_rss_mb"]}


def results(quick: bool = False, http_rss: bool = False) -> list[dict[str, Any]]:
    """The three rows of the delivery benchmarks (see the module docstring)."""
    a = instant_server(quick)
    b = slow_server(quick)
    c = memory(quick, http_rss)
    via = "HTTP" if http_rss else "in-process transport"
    return [
        {
            "name": "send_events vs requests.Session loop, instant local server",
            "measured": f"{a['deliver_eps']:,.0f} vs {a['loop_eps']:,.0f} events/s = {a['speedup']:.2f}x",
            "target": f">= {TARGET_SPEEDUP:.0f}x",
            "ratio": a["speedup"] / TARGET_SPEEDUP,
            "ok": a["speedup"] >= TARGET_SPEEDUP,
        },
        {
            "name": f"send_events, server answering after 50 ms, concurrency 64 ({b['count']:,} events)",
            "measured": f"{b['eps']:,.0f} events/s = {b['of_ideal']:.1%} of {b['ideal']:,.0f}",
            "target": f">= {TARGET_OF_IDEAL:.0%} ({TARGET_OF_IDEAL * b['ideal']:,.0f} events/s)",
            "ratio": b["of_ideal"] / TARGET_OF_IDEAL,
            "ok": b["of_ideal"] >= TARGET_OF_IDEAL,
        },
        {
            "name": f"send_events peak RSS, {c['large']['count']:,} vs {c['small']['count']:,} events ({via})",
            "measured": f"{c['large']['peak_rss_mb']:.1f} MB vs {c['small']['peak_rss_mb']:.1f} MB = {c['ratio']:.2f}x",
            "target": f"<= {TARGET_RSS}x",
            "ratio": TARGET_RSS / c["ratio"],
            "ok": c["ratio"] <= TARGET_RSS,
        },
    ]


def _child_main(count: int, http: bool) -> None:
    logging.disable(logging.WARNING)
    if http:
        from benchmarks._server import posts_received, running_server

        with running_server() as url:
            seconds = _deliver(url, count)
            if posts_received(url) != count:
                raise RuntimeError("the server did not receive every event")
    else:
        seconds = _deliver(None, count)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"count": count, "seconds": round(seconds, 2), "peak_rss_mb": peak}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run, not the targets' sizes)")
    parser.add_argument("--rss-http", action="store_true", help="send the memory benchmark's events over HTTP (minutes)")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        _child_main(args.rss_child, args.rss_http)
        return 0
    return report(results(quick=args.quick, http_rss=args.rss_http))


if __name__ == "__main__":
    sys.exit(main())
