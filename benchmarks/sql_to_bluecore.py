"""Benchmarks of SqlToBluecoreOperator (issue 4): the cost of SQL + mapping, and memory that does not grow with the table.

1. **Throughput.** From a 100,000-row SQLite table, the operator's events/s against ``BluecoreHook.send_events`` on the same
   100,000 events pre-built in memory, in the same process, alternating the two (best of ``rounds`` each). Target: >= 80 %.
   The operator can come out above 100 %: 100,000 live pre-built dicts make every full garbage collection walk them (measured
   here with an in-process transport: ~26,000 events/s from the list, ~30,000 from a generator or after ``gc.freeze()``),
   while the operator holds only a bounded window of events.
2. **Memory.** Peak RSS (``ru_maxrss``) of a whole operator run (query, mapping, validation, the delivery engine) over
   1,000,000 rows against the same over 100,000 rows, on SQLite and on PostgreSQL (a throwaway cluster, started here with
   ``tests/postgres.py``). Target: <= 1.2x. Each run is a fresh interpreter, so one run's peak does not hide in the other's.
   As in the delivery benchmark, the events go to an in-process transport answering 202 at once (a million real POSTs take
   minutes on a small machine); ``--rss-http`` sends them to the local HTTP server instead.

The operator runs in ``mode="all"`` (no sync state: that layer's cost has its own benchmark). HTTP runs send to
:mod:`benchmarks._server` (a fast local stand-in for the Events API, in its own process) and check that every event arrived.
Run alone with ``python -m benchmarks.sql_to_bluecore [--quick] [--rss-http]``; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks._server import posts_received, running_server

THROUGHPUT_ROWS = 100_000
RSS_SMALL, RSS_LARGE = 100_000, 1_000_000
TARGET_RATIO = 0.8
TARGET_RSS = 1.2
LOOPBACK = "http://127.0.0.1:9"
COLUMNS = "distinct_id, first_name, tier, points"
REPO = Path(__file__).resolve().parent.parent


def _row(i: int) -> tuple[str, str, str, int]:
    return (f"user{i}@example.com", f"Name{i}", ("gold", "silver", "bronze")[i % 3], i)


def _event(i: int) -> dict[str, Any]:
    distinct_id, first_name, tier, points = _row(i)
    return {
        "event": "customer_patch",
        "properties": {"distinct_id": distinct_id, "customer": {"first_name": first_name, "tier": tier, "points": points}},
    }


def _sqlite_table(path: Path, rows: int) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE customers ({COLUMNS})")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", (_row(i) for i in range(rows)))
    return {"conn_type": "sqlite", "host": str(path)}


def _postgres_table(url: str, rows: int) -> dict[str, Any]:
    import psycopg2

    db = psycopg2.connect(url)
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS customers")
        cur.execute(
            "CREATE TABLE customers AS SELECT 'user' || i || '@example.com' AS distinct_id, 'Name' || i AS first_name, "
            "(ARRAY['gold', 'silver', 'bronze'])[i %% 3 + 1] AS tier, i AS points FROM generate_series(0, %s) i",
            (rows - 1,),
        )
    db.close()
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    return {"conn_type": "postgres", "host": "127.0.0.1", "port": int(host_port.rsplit(":", 1)[1]), "login": "postgres",
            "schema": "postgres"}  # fmt: skip


def _child(kind: str, source: dict[str, Any], server_url: str | None, **args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (its task logs go to a file) and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="bluecore-bench-") as home:
        out = Path(home) / "result.json"
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_BENCH_WAREHOUSE": json.dumps(source),
            # Without a server the memory runs use the in-process transport: port 9 (discard) is never contacted.
            "AIRFLOW_CONN_BENCH_BLUECORE": json.dumps(
                {"conn_type": "bluecore", "login": "bench", "host": server_url or LOOPBACK}
            ),
        }
        spec = json.dumps({"kind": kind, "out": str(out), "http": server_url is not None, **args})
        command = [sys.executable, "-m", "benchmarks.sql_to_bluecore", "--child", spec]
        log = Path(home) / "child.log"
        with log.open("w") as sink:
            done = subprocess.run(command, env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise RuntimeError(f"benchmark child {kind} failed ({done.returncode}):\n{tail}")
        return dict(json.loads(out.read_text()))


def _instant_transport() -> None:
    """Make the delivery engine's default transport an in-process one answering 202 at once (the memory runs)."""
    import asyncio

    from airflow_provider_bluecore import delivery

    class Instant:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            return None

        async def post(self, body: bytes) -> delivery.TransportResponse:
            await asyncio.sleep(0)
            return delivery.TransportResponse(202, {}, "")

        async def close(self) -> None:
            return None

    delivery.AiohttpTransport = Instant  # type: ignore[misc,assignment]


def _run_child(spec: dict[str, Any]) -> None:
    import logging

    logging.disable(logging.WARNING)
    if not spec["http"]:
        _instant_transport()
    from airflow_provider_bluecore.hooks.bluecore import BluecoreHook
    from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

    def operator_run() -> dict[str, Any]:
        op = SqlToBluecoreOperator(
            task_id="bench",
            conn_id="bench_warehouse",
            sql="SELECT * FROM customers",
            bluecore_conn_id="bench_bluecore",
            mode="all",  # SQL + mapping + sending only; the sync state's own cost is measured by its benchmark
        )
        started = time.perf_counter()
        summary = op.execute({})
        return {"seconds": time.perf_counter() - started, "sent": summary["sent"]}

    result: dict[str, Any]
    if spec["kind"] == "rss":
        result = operator_run()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    else:
        rows = spec["rows"]
        prebuilt = [_event(i) for i in range(rows)]
        hook = BluecoreHook(bluecore_conn_id="bench_bluecore")
        deliver_s, operator_s = [], []
        for _ in range(spec["rounds"]):
            started = time.perf_counter()
            report = hook.send_events(prebuilt)
            deliver_s.append(time.perf_counter() - started)
            if report.sent != rows:
                raise RuntimeError(report.summary_line())
            run = operator_run()
            if run["sent"] != rows:
                raise RuntimeError(f"the operator sent {run['sent']} of {rows}")
            operator_s.append(run["seconds"])
        result = {"rows": rows, "deliver_eps": rows / min(deliver_s), "operator_eps": rows / min(operator_s)}
    Path(spec["out"]).write_text(json.dumps(result))


def throughput(rows: int = THROUGHPUT_ROWS, rounds: int = 2) -> dict[str, Any]:
    """Operator events/s vs send_events on pre-built events, same process, same server, alternated; best of ``rounds`` each."""
    with tempfile.TemporaryDirectory() as tmp, running_server() as url:
        source = _sqlite_table(Path(tmp) / "warehouse.db", rows)
        result = _child("throughput", source, url, rows=rows, rounds=rounds)
        if posts_received(url) != 2 * rounds * rows:
            raise RuntimeError(f"not every event arrived: {posts_received(url)} received of {2 * rounds * rows}")
    return {**result, "ratio": result["operator_eps"] / result["deliver_eps"]}


def peak_rss(source_kind: str, small: int = RSS_SMALL, large: int = RSS_LARGE, http: bool = False) -> dict[str, Any]:
    """Peak RSS of an operator run over ``large`` rows against ``small`` rows, from SQLite or PostgreSQL."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(running_server()) if http else None
        if source_kind == "postgres":
            from tests.postgres import postgres_cluster

            pg_url = stack.enter_context(postgres_cluster())
        peaks = {}
        for rows in (small, large):
            before = posts_received(url) if url else 0
            source = _postgres_table(pg_url, rows) if source_kind == "postgres" else _sqlite_table(tmp / f"w{rows}.db", rows)
            run = _child("rss", source, url)
            arrived = posts_received(url) - before if url else run["sent"]
            if run["sent"] != rows or arrived != rows:
                raise RuntimeError(f"not every event arrived: {rows} rows, {run['sent']} sent, {arrived} received")
            peaks[rows] = run["peak_rss_mb"]
    return {"small_mb": peaks[small], "large_mb": peaks[large], "ratio": peaks[large] / peaks[small]}


def results(quick: bool = False, http_rss: bool = False) -> list[dict[str, Any]]:
    """The table rows (name, measured, target, ratio, ok). ``quick`` uses 10x fewer rows (not the targets' sizes)."""
    scale = 10 if quick else 1
    t = throughput(THROUGHPUT_ROWS // scale)
    rows = [
        {
            "name": f"SqlToBluecoreOperator from SQLite vs send_events on pre-built events, {t['rows']:,} rows",
            "measured": f"{t['operator_eps']:,.0f} vs {t['deliver_eps']:,.0f} events/s = {t['ratio']:.0%}",
            "target": f">= {TARGET_RATIO:.0%}",
            "ratio": t["ratio"] / TARGET_RATIO,
            "ok": t["ratio"] >= TARGET_RATIO,
        }
    ]
    via = "HTTP" if http_rss else "in-process transport"
    for kind in ("sqlite", "postgres"):
        r = peak_rss(kind, RSS_SMALL // scale, RSS_LARGE // scale, http=http_rss)
        rows.append(
            {
                "name": f"SqlToBluecoreOperator peak RSS from {kind}, {RSS_LARGE // scale:,} vs {RSS_SMALL // scale:,} rows "
                f"({via})",
                "measured": f"{r['large_mb']:.0f} MB vs {r['small_mb']:.0f} MB = {r['ratio']:.2f}x",
                "target": f"<= {TARGET_RSS}x",
                "ratio": TARGET_RSS / r["ratio"],
                "ok": r["ratio"] <= TARGET_RSS,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x fewer rows (a smoke run, not the targets' sizes)")
    parser.add_argument("--rss-http", action="store_true", help="send the memory runs' events over HTTP (minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _run_child(json.loads(args.child))
        return 0
    return report(results(quick=args.quick, http_rss=args.rss_http))


if __name__ == "__main__":
    sys.exit(main())
