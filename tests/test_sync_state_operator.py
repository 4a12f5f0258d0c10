"""SqlToBluecoreOperator with its sync state: real SQLite warehouse and state, the recording stub Bluecore server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_bluecore.sync_state import StateStore
from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator
from tests.conftest import REPO, conn_json
from tests.stub_server import StubBluecore


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An SQLite warehouse behind connection ``warehouse`` with a ``customers(distinct_id, email, tier)`` table."""
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (distinct_id TEXT, email TEXT, tier TEXT)")
        db.execute("CREATE TABLE orders (order_id TEXT, distinct_id TEXT, email TEXT, total REAL, product_id TEXT)")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def put(path: Path, table: str, *rows: tuple[Any, ...]) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"DELETE FROM {table}")
        db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)


def sync(context: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("sql", "SELECT * FROM customers")
    op = SqlToBluecoreOperator(task_id="push", conn_id="warehouse", max_rejected=None, **kwargs)
    return op.execute(context or {})


def arrived(server: StubBluecore) -> list[tuple[str, str]]:
    time.sleep(0.05)  # the stub records a request just after answering it
    return [(b["event"], b["properties"]["distinct_id"]) for b in server.accepted]


def test_changed_mode_sends_only_changed_rows(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"), ("b@x.co", "b@x.co", "silver"))
    assert sync()["sent"] == 2
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"), ("b@x.co", "b@x.co", "gold"))
    summary = sync()
    assert (summary["sent"], summary["skipped_unchanged"], summary["mode"]) == (1, 1, "changed")
    assert arrived(bluecore_conn)[-1] == ("customer_patch", "b@x.co")


def test_new_mode_sends_an_order_once_even_if_it_changes(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "orders", ("o-1", "a@x.co", "a@x.co", 10.0, "p1"))
    assert sync(sql="SELECT * FROM orders", event="purchase")["sent"] == 1
    put(warehouse, "orders", ("o-1", "a@x.co", "a@x.co", 12.0, "p1"), ("o-2", "a@x.co", "a@x.co", 5.0, "p2"))
    summary = sync(sql="SELECT * FROM orders", event="purchase")
    assert (summary["sent"], summary["skipped_already_delivered"], summary["mode"]) == (1, 1, "new")


def test_all_mode_sends_everything_without_state(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    sync()
    summary = sync(mode="all")
    assert summary["sent"] == 1
    assert "skipped_unchanged" not in summary


def test_a_failed_event_is_resent_first_even_when_its_row_is_gone(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    bluecore_conn.state.default = 400  # not retried: the event fails
    with pytest.raises(Exception, match="could not be delivered"):
        sync()
    bluecore_conn.state.default = 202
    put(warehouse, "customers", ("b@x.co", "b@x.co", "silver"))
    summary = sync()
    assert (summary["sent"], summary["resent_from_failures"], summary["still_failing"]) == (2, 1, 0)
    assert sorted(arrived(bluecore_conn)) == [("customer_patch", "a@x.co"), ("customer_patch", "b@x.co")]


def test_a_failure_that_fails_again_is_still_failing(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    bluecore_conn.state.default = 400
    for _ in range(2):
        with pytest.raises(Exception, match="could not be delivered"):
            sync()
    state = StateStore(f"sqlite:///{os.environ['AIRFLOW__BLUECORE__STATE_DB']}")
    [problem] = state.sync("adhoc_airflow.push").problems()
    assert (problem.key, problem.status, problem.attempts) == ("customer_patch:a***@x.co", "failed", 2)


def test_a_rejected_row_is_not_tried_again_until_it_changes(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "not-an-email", "gold"))
    assert sync()["rejected"] == 1
    again = sync()
    assert (again["rejected"], again["skipped_rejected_unchanged"]) == (0, 1)
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    assert sync()["sent"] == 1


def test_key_column_keys_other_events_and_defaults_to_new(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"), ("b@x.co", "b@x.co", "gold"))
    sql = "SELECT distinct_id, 'v-' || distinct_id AS view_id, 'p1' AS product_id FROM customers"
    kwargs = {"sql": sql, "event": "viewed_product", "key_column": "view_id", "allow_backfill": True}
    assert sync(**kwargs)["sent"] == 2
    summary = sync(**kwargs)
    assert (summary["sent"], summary["skipped_already_delivered"], summary["mode"]) == (0, 2, "new")


def test_a_bad_mode_fails_the_task_naming_it(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    with pytest.raises(Exception, match="mode: must be one of changed, new, all"):
        sync(mode="sometimes")


def mapped(index: int) -> dict[str, Any]:
    """The context of a mapped task instance: the two ids the state reads, and xcom_push for the failure summary."""
    return {"ti": SimpleNamespace(dag_id="d", map_index=index, xcom_push=lambda **kwargs: None)}


def test_mapped_partitions_share_delivered_state_and_keep_their_failures(warehouse: Path, bluecore_conn: StubBluecore) -> None:
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    bluecore_conn.state.default = 400
    with pytest.raises(Exception, match="could not be delivered"):
        sync(mapped(0))
    bluecore_conn.state.default = 202
    put(warehouse, "customers", ("b@x.co", "b@x.co", "gold"))
    other = sync(mapped(1))
    assert (other["sent"], other["resent_from_failures"], other["sync_id"]) == (1, 0, "d.push")
    assert sync(mapped(0))["resent_from_failures"] == 1


@pytest.mark.postgres
def test_the_state_can_live_in_postgres(
    warehouse: Path, bluecore_conn: StubBluecore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_STATE",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "login": "postgres",
                "port": int(postgres_url.rsplit(":", 1)[1].split("/")[0]),
                "schema": "postgres",
            }
        ),
    )
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"))
    assert sync(state_conn_id="state", sync_id="pg.sync")["sent"] == 1
    assert sync(state_conn_id="state", sync_id="pg.sync")["skipped_unchanged"] == 1
    assert StateStore(postgres_url).sync("pg.sync").counts()["delivered"] == 1


@pytest.mark.mariadb
def test_the_state_can_live_in_mariadb_through_the_state_db_setting(
    warehouse: Path, bluecore_conn: StubBluecore, mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MySQL-family databases take the portable read-then-write path; ``[bluecore] state_db`` takes any SQLAlchemy URL."""
    monkeypatch.setenv("AIRFLOW__BLUECORE__STATE_DB", mariadb_url)
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"), ("b@x.co", "b@x.co", "silver"))
    assert sync(sync_id="maria.sync")["sent"] == 2
    put(warehouse, "customers", ("a@x.co", "a@x.co", "gold"), ("b@x.co", "b@x.co", "gold"))
    summary = sync(sync_id="maria.sync")
    assert (summary["sent"], summary["skipped_unchanged"]) == (1, 1)
    assert arrived(bluecore_conn)[-1] == ("customer_patch", "b@x.co")
    assert StateStore(mariadb_url).sync("maria.sync").counts()["delivered"] == 2


KILLED_SYNC = """
from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator
SqlToBluecoreOperator(task_id="push", conn_id="warehouse", sql="SELECT * FROM customers", max_rejected=None).execute({})
"""


def test_a_sync_killed_mid_run_loses_nothing_and_duplicates_within_the_bound(
    warehouse: Path, bluecore_server: StubBluecore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [(f"c{i}@x.co", f"c{i}@x.co", "gold") for i in range(1500)]
    put(warehouse, "customers", *rows)
    monkeypatch.setenv("AIRFLOW_CONN_BLUECORE_DEFAULT", conn_json(bluecore_server.url, concurrency=4))
    bluecore_server.state.delay = 0.01
    worker = subprocess.Popen([sys.executable, "-c", KILLED_SYNC], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while bluecore_server.state.count < 700 and worker.poll() is None:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    assert bluecore_server.state.count < len(rows)  # killed mid-sync
    bluecore_server.state.delay = 0
    sync()
    counts = Counter(body["properties"]["distinct_id"] for body in bluecore_server.accepted)
    assert set(counts) == {r[0] for r in rows}  # nothing lost
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= 500 + 4  # the documented bound: flush_every + concurrency
