"""Every example DAG runs through Airflow (dag.test) against the local sandbox and the sample SQLite warehouse.

What the sandbox accepted is compared with what the warehouse holds, counted independently with SQL here. A second run of a
DAG sends nothing that did not change.
"""

from __future__ import annotations

import datetime as dt
import json
import runpy
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_bluecore.sandbox import SandboxServer
from example_dags import sample_warehouse
from tests.conftest import REPO, conn_json

EXAMPLES = sorted(p.stem for p in (REPO / "example_dags").glob("example_bluecore_*.py"))
CUSTOMERS = 1000


def _airflow3() -> bool:
    from airflow import __version__

    return int(__version__.split(".")[0]) >= 3


def _today() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_warehouse.build(tmp_path_factory.mktemp("warehouse") / "warehouse.db", customers=CUSTOMERS)


@pytest.fixture
def sandbox(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    with SandboxServer(namespace="bluestore") as server:
        monkeypatch.setenv("AIRFLOW_CONN_BLUECORE_DEFAULT", conn_json(server.url))
        monkeypatch.setenv("AIRFLOW_CONN_SAMPLE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)}))
        yield server


def run_example(name: str) -> Any:
    """Copy the example into the DAGs folder (Airflow 3 runs only DAGs it has parsed) and run it for the day ending today."""
    import os

    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.copy(REPO / "example_dags" / f"{name}.py", dags / f"{name}.py"))
    dag = next(v for v in runpy.run_path(str(path)).values() if type(v).__name__ == "DAG")
    # Both majors then see data_interval_end == today 00:00 UTC (a manual run's interval ends at its logical date).
    if _airflow3():
        return dag.test(logical_date=_today())
    # Airflow 2.11's dag.test() deletes an earlier run of the same date, which needs FAB's ab_user table mapped.
    import airflow.providers.fab.auth_manager.models  # noqa: F401

    return dag.test(execution_date=_today())


def accepted(server: SandboxServer) -> dict[str, int]:
    return {row["event"]: row["accepted"] for row in server.store.stats()["events"]}


def count(warehouse: Path, sql: str, *params: Any) -> int:
    with sqlite3.connect(warehouse) as con:
        return int(con.execute(sql, params).fetchone()[0])


def expected(warehouse: Path, name: str) -> dict[str, int]:
    """What each example should deliver, counted straight from the warehouse (bad rows excluded)."""
    valid_customers = count(warehouse, "SELECT count(*) FROM customers WHERE email LIKE '%_@_%._%'")
    end = _today().strftime("%Y-%m-%d %H:%M:%S")
    start = (_today() - dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    window = "BETWEEN ? AND ? AND {col} < ?"
    return {
        "example_bluecore_customer_attributes": {"customer_patch": valid_customers},
        "example_bluecore_partitioned": {"customer_patch": valid_customers},
        "example_bluecore_identify": {"identify": count(warehouse, "SELECT count(*) FROM devices")},
        "example_bluecore_purchases": {"purchase": count(warehouse, "SELECT count(DISTINCT order_id) FROM order_lines")},
        "example_bluecore_consents": {
            "optin+unsubscribe": count(warehouse, "SELECT count(DISTINCT email) FROM consents WHERE email IS NOT NULL")
        },
        "example_bluecore_behaviour": {
            "viewed_product": count(
                warehouse,
                "SELECT count(*) FROM product_views WHERE product_id IS NOT NULL AND viewed_at " + window.format(col="viewed_at"),
                start,
                end,
                end,
            ),
            "search": count(
                warehouse, "SELECT count(*) FROM searches WHERE searched_at " + window.format(col="searched_at"), start, end, end
            ),
        },
    }[name]


def succeeded(dag_run: Any) -> bool:
    return str(dag_run.state) in ("success", "DagRunState.SUCCESS")


@pytest.mark.airflow_db
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_dag_delivers_every_valid_row_once(name: str, airflow_db: str, sandbox: SandboxServer, warehouse: Path) -> None:
    assert succeeded(run_example(name))
    got = accepted(sandbox)
    got["optin+unsubscribe"] = got.get("optin", 0) + got.get("unsubscribe", 0)
    want = expected(warehouse, name)
    assert {k: got.get(k, 0) for k in want} == want
    assert all(v > 0 for v in want.values()), "the sample warehouse should give every example something to send"

    before = sandbox.store.stats()["accepted"]
    assert succeeded(run_example(name))
    assert sandbox.store.stats()["accepted"] == before, "a second run of unchanged data must send nothing"


def test_every_example_has_a_docstring_saying_when_to_use_it() -> None:
    for name in EXAMPLES:
        doc = (REPO / "example_dags" / f"{name}.py").read_text().split('"""')[1]
        assert "Use this" in doc, name
