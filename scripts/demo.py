"""`make demo`: the main job end to end on embedded defaults, then a readable report of what landed.

1. builds a sample SQLite warehouse in ``.demo/warehouse.db`` (on later runs: applies a "day" of changes to it instead);
2. starts the local Bluecore sandbox (``.demo/sandbox.db`` keeps what it accepted across runs);
3. runs every example DAG through Airflow (``airflow dags test``) with its home in ``.demo/airflow``, which is kept, so the sync
   state persists and a second run sends only what changed;
4. prints, per DAG, what was sent, skipped, rejected (with reasons) and failed, the sandbox's totals, and where to look;
5. stops the sandbox.

``python scripts/demo.py --fresh`` starts over (removes ``.demo/``). ``--keep-sandbox`` leaves the sandbox running at the end so
the page can be browsed (Ctrl-C to stop).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from example_dags import sample_warehouse  # noqa: E402

DAGS = [
    "example_bluecore_customer_attributes",
    "example_bluecore_identify",
    "example_bluecore_purchases",
    "example_bluecore_consents",
    "example_bluecore_behaviour",
    "example_bluecore_partitioned",
]
NAMESPACE = "bluestore"


def _env(home: Path, warehouse: Path, sandbox_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_SAMPLE_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
            "AIRFLOW_CONN_BLUECORE_DEFAULT": json.dumps({"conn_type": "bluecore", "login": NAMESPACE, "host": sandbox_url}),
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def _airflow(env: dict[str, str], *args: str, log: Path | None = None) -> int:
    airflow = Path(sys.executable).with_name("airflow")
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.run([str(airflow), *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    finally:
        if log:
            out.close()


def _summaries(home: Path, dag_id: str) -> list[dict[str, Any]]:
    """The latest run's SqlToBluecoreOperator summaries (XCom return values that look like one)."""
    con = sqlite3.connect(home / "airflow.db")
    try:
        row = con.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)).fetchone()
        if row is None:
            return []
        rows = con.execute(
            "SELECT task_id, map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'"
            " ORDER BY task_id, map_index",
            (dag_id, row[0]),
        ).fetchall()
    finally:
        con.close()
    out = []
    for task_id, map_index, value in rows:
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(data, dict) and "events_built" in data:
            data["task"] = task_id if map_index < 0 else f"{task_id}[{map_index}]"
            if "partitions" in data:
                data["task"] = f"{task_id} (all {data['partitions']})"
            out.append(data)
    return out


def _line(summary: dict[str, Any]) -> str:
    skipped = sum(summary.get(k, 0) for k in ("skipped_unchanged", "skipped_already_delivered", "skipped_rejected_unchanged"))
    parts = [
        f"{summary.get('sent', 0):>5} sent",
        f"{skipped:>5} skipped (unchanged/already sent)",
        f"{summary.get('rejected', 0):>3} rejected",
        f"{summary.get('failed', 0):>2} failed",
    ]
    if summary.get("resent_from_failures"):
        parts.append(f"{summary['resent_from_failures']} resent from earlier failures")
    return f"    {summary['task']:<22} " + ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the example DAGs against a local Bluecore sandbox and report.")
    parser.add_argument("--dir", default=str(REPO / ".demo"), help="where the demo keeps its warehouse, state and logs")
    parser.add_argument("--fresh", action="store_true", help="start over: remove the demo folder first")
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox running at the end (Ctrl-C stops it)")
    parser.add_argument("--port", type=int, default=8765, help="sandbox port (0: any free port)")
    args = parser.parse_args()

    from airflow_provider_bluecore.sandbox import SandboxServer

    root = Path(args.dir)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    home, warehouse = root / "airflow", root / "warehouse.db"
    marker = root / "runs"
    run = int(marker.read_text()) + 1 if marker.exists() else 1
    started = time.monotonic()

    if warehouse.exists() and run > 1:
        sample_warehouse.apply_daily_changes(warehouse, run=run)
        print(f"Run {run}: applied a day of changes to {warehouse} (25 customers edited, 10 new orders)")
    else:
        sample_warehouse.build(warehouse)
        print(f"Run {run}: built a sample warehouse at {warehouse} (3,000 customers, 1,500 orders, views, consents)")

    try:
        sandbox = SandboxServer(port=args.port, db_path=str(root / "sandbox.db"), namespace=NAMESPACE).start()
    except OSError:
        sandbox = SandboxServer(port=0, db_path=str(root / "sandbox.db"), namespace=NAMESPACE).start()
    print(f"Local Bluecore sandbox at {sandbox.url} (namespace {NAMESPACE!r})")
    try:
        env = _env(home, warehouse, sandbox.url)
        if not (home / "airflow.db").exists():
            print("Preparing Airflow's metadata database (first run only) ...")
            if _airflow(env, "db", "migrate", log=root / "logs" / "db-migrate.log") != 0:
                print(f"airflow db migrate failed; see {root / 'logs' / 'db-migrate.log'}")
                return 1
        # The run for today's date covers yesterday's data interval, as a scheduled daily run would.
        logical_date = dt.datetime.now(dt.timezone.utc).date().isoformat()
        failures = []
        print(f"Running {len(DAGS)} example DAGs through Airflow (airflow dags test ..., logical date {logical_date}):")
        report: list[str] = []
        for dag_id in DAGS:
            t0 = time.monotonic()
            log = root / "logs" / f"{dag_id}.log"
            rc = _airflow(env, "dags", "test", dag_id, logical_date, log=log)
            status = "ok" if rc == 0 else f"FAILED (exit {rc}; see {log})"
            print(f"  {dag_id:<40} {status} in {time.monotonic() - t0:.0f} s")
            if rc != 0:
                failures.append(dag_id)
            report.append(f"  {dag_id}")
            for summary in _summaries(home, dag_id):
                report.append(_line(summary))
                for sample in summary.get("samples", [])[:2]:
                    reasons = "; ".join(sample.get("reasons", []))
                    key = sample.get("key") or "(no distinct_id)"
                    report.append(f"        {sample.get('status', 'rejected')} {key}: {reasons}")
        marker.write_text(str(run))

        stats = sandbox.store.stats()
        print("\nWhat each sync did (this run):")
        print("\n".join(report))
        print(f"\nWhat the sandbox accepted (all runs): {stats['accepted']} events from {stats['distinct_ids']} distinct ids")
        for row in stats.get("events", []):
            print(f"    {row['event']:<18} {row['accepted']:>6} events  {row['customers']:>6} customers")
        print(f"\nDone in {time.monotonic() - started:.0f} s. Logs: {root / 'logs'}")
        bluecore = os.path.relpath(Path(sys.executable).with_name("bluecore"))
        print(f"Look at the result: {bluecore} sandbox --db {root / 'sandbox.db'}  then open http://127.0.0.1:8765/")
        print("Run `make demo` again: only the day's changes are sent; `python scripts/demo.py --fresh` starts over.")
        if args.keep_sandbox:
            print(f"Sandbox still running at {sandbox.url} - Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 1 if failures else 0
    finally:
        sandbox.stop()


if __name__ == "__main__":
    raise SystemExit(main())
