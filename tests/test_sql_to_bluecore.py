"""SqlToBluecoreOperator against real SQLite / PostgreSQL sources and the recording stub Bluecore server."""

from __future__ import annotations

import json
import os
import runpy
import sqlite3
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from airflow_provider_bluecore.delivery import Outcome
from airflow_provider_bluecore.exceptions import BluecoreDeliveryError
from airflow_provider_bluecore.mapping import MappedEvent, RowMapper
from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator
from tests.stub_server import StubBluecore

FAIL = "AirflowFailException"

Warehouse = Callable[..., str]


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """Create a SQLite table from column names and rows, reachable as connection `warehouse`; returns the DB path."""

    def create(columns: list[str], rows: list[tuple[Any, ...]], table: str = "t") -> str:
        path = tmp_path / "warehouse.db"
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in columns)})", rows)
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
        return str(path)

    return create


def operator(**kwargs: Any) -> SqlToBluecoreOperator:
    kwargs.setdefault("sql", "SELECT * FROM t")
    return SqlToBluecoreOperator(task_id=kwargs.pop("task_id", "sync"), conn_id="warehouse", **kwargs)


def run_type(value: str, interval_end: datetime | None = None) -> dict[str, Any]:
    """A task context as Airflow passes it, with the two keys the backfill guard reads."""
    return {"dag_run": SimpleNamespace(run_type=value), "data_interval_end": interval_end}


def accepted(server: StubBluecore, n: int) -> list[Any]:
    """The bodies the stub accepted, once ``n`` are recorded (it records a request just after answering it)."""
    deadline = time.monotonic() + 5
    while len(server.accepted) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.accepted


def bodies(server: StubBluecore, n: int) -> list[tuple[str, Any]]:
    return [(b["event"], b["properties"]["distinct_id"]) for b in accepted(server, n)]


def nothing_arrived(server: StubBluecore) -> bool:
    return server.state.count == 0  # counted on arrival, before any answer


def test_rows_arrive_as_customer_patches_with_identify_first(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "email", "tier"], [("c-1", "jo@example.com", "gold"), ("al@example.com", None, "silver")])
    summary = operator().execute({})
    assert sorted(bodies(bluecore_conn, 3)) == [
        ("customer_patch", "al@example.com"),
        ("customer_patch", "c-1"),
        ("identify", "c-1"),
    ]
    patch = next(
        b for b in accepted(bluecore_conn, 3) if b["properties"]["distinct_id"] == "c-1" and b["event"] == "customer_patch"
    )
    assert patch["properties"]["customer"] == {"tier": "gold", "email": "jo@example.com"}
    assert (summary["rows_read"], summary["events_built"], summary["sent"], summary["rejected"]) == (2, 3, 3, 0)


def test_identify_arrives_before_the_event_of_the_same_customer(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "email", "n"], [(f"c-{i % 5}", f"u{i % 5}@example.com", i) for i in range(40)])
    operator(concurrency=8).execute({})
    for i in range(5):
        assert [name for name, key in bodies(bluecore_conn, 45) if key == f"c-{i}"] == ["identify"] + ["customer_patch"] * 8


def test_parameters_are_bound_by_the_driver(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "tier"], [("a@b.co", "gold"), ("c@d.co", "silver")])
    operator(sql="SELECT * FROM t WHERE tier = ?", parameters=["gold"]).execute({})
    operator(task_id="again", sql="SELECT * FROM t WHERE tier = ?", parameters=["x' OR '1'='1"]).execute({})
    assert bodies(bluecore_conn, 1) == [("customer_patch", "a@b.co")]


def test_invalid_column_name_fails_before_anything_is_sent(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(['"distinct_id"', '"First Name"'], [("a@b.co", "Jo")])
    with pytest.raises(Exception, match=r'SELECT "First Name" AS first_name') as info:
        operator().execute({})
    assert type(info.value).__name__ == FAIL
    assert nothing_arrived(bluecore_conn)


def test_attribute_outside_allowlist_fails_before_anything_is_sent(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "tier", "ssn"], [("a@b.co", "gold", "123")])
    with pytest.raises(Exception, match=r"'ssn'.*not in customer_attributes"):
        operator(customer_attributes=["tier"]).execute({})
    assert nothing_arrived(bluecore_conn)


def test_null_values_are_not_sent(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "tier", "city"], [("a@b.co", None, "Oslo")])
    operator().execute({})
    assert accepted(bluecore_conn, 1)[0]["properties"]["customer"] == {"city": "Oslo"}
    assert b"None" not in bluecore_conn.received[0].raw


def test_send_nulls_sends_json_null(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "tier"], [("a@b.co", None)])
    operator(send_nulls=True).execute({})
    assert accepted(bluecore_conn, 1)[0]["properties"]["customer"] == {"tier": None}


def test_purchase_rows_are_grouped_and_an_inconsistent_order_is_rejected(
    warehouse: Warehouse, bluecore_conn: StubBluecore
) -> None:
    rows = [("o1", "a@b.co", "a@b.co", 30, "p1"), ("o1", "a@b.co", "a@b.co", 30, "p2"), ("o2", "a@b.co", "a@b.co", 5, "p3")]
    rows.append(("o2", "a@b.co", "a@b.co", 6, "p4"))
    warehouse(["order_id", "distinct_id", "email", "total", "product_id"], rows)
    summary = operator(event="purchase", sql="SELECT * FROM t ORDER BY order_id", max_rejected=1).execute({})
    [purchase] = accepted(bluecore_conn, 1)
    assert purchase["properties"]["products"] == [{"id": "p1"}, {"id": "p2"}]
    assert summary["rejected"] == 1
    assert summary["samples"][0]["row"] == 3
    assert summary["samples"][0]["reasons"][0].startswith("properties.total: differs")


def test_explicit_mapping_and_callable(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["cid", "q"], [("a@b.co", "boots")])
    operator(event="search", mapping={"cid": "distinct_id", "q": "search_term"}).execute({})
    operator(
        task_id="cb",
        row_to_event=lambda r: {"event": "wishlist", "properties": {"distinct_id": r["cid"], "products": [{"id": r["q"]}]}},
    ).execute({})
    assert [b["event"] for b in accepted(bluecore_conn, 2)] == ["search", "wishlist"]
    assert accepted(bluecore_conn, 2)[0]["properties"]["search_term"] == "boots"


def test_rejects_beyond_max_rejected_fail_the_task_after_valid_rows_are_sent(
    warehouse: Warehouse, bluecore_conn: StubBluecore
) -> None:
    warehouse(["distinct_id", "email"], [("a@b.co", "a@b.co"), ("b@b.co", "not-an-email"), ("c@b.co", "c@b.co")])
    with pytest.raises(Exception, match=r"1 events rejected, beyond max_rejected \(0\).*row 2") as info:
        operator().execute({})
    assert type(info.value).__name__ == FAIL
    assert bodies(bluecore_conn, 1) == [("customer_patch", "a@b.co")]


def test_rejects_within_max_rejected_are_reported_and_the_rest_sent(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "email"], [("a@b.co", "a@b.co"), ("b@b.co", "not-an-email"), ("c@b.co", "c@b.co")])
    summary = operator(max_rejected=None).execute({})
    assert (summary["sent"], summary["rejected"]) == (2, 1)
    assert summary["samples"] == [
        {"row": 2, "event": "customer_patch", "key": "b***@b.co", "status": "rejected",
         "reasons": ["properties.customer.email: must be an e-mail address"]}
    ]  # fmt: skip


def test_failed_deliveries_fail_the_task_and_push_the_summary(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id"], [("a@b.co",), ("b@b.co",)])
    bluecore_conn.state.script = [400]
    ti = mock.Mock(spec_set=["xcom_push"])
    with pytest.raises(BluecoreDeliveryError, match="1 events could not be delivered"):
        operator().execute({"ti": ti})
    pushed = ti.xcom_push.call_args.kwargs
    assert pushed["key"] == "summary"
    assert (pushed["value"]["sent"], pushed["value"]["failed"]) == (1, 1)


def test_behavioural_events_are_refused_in_a_backfill_run(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "product_id"], [("a@b.co", "p1")])
    with pytest.raises(Exception, match="Refusing to send viewed_product events: this is a backfill run"):
        operator(event="viewed_product").execute(run_type("backfill"))
    assert nothing_arrived(bluecore_conn)


def test_behavioural_events_are_refused_when_the_interval_is_older_than_max_event_age(
    warehouse: Warehouse, bluecore_conn: StubBluecore
) -> None:
    warehouse(["distinct_id", "product_id"], [("a@b.co", "p1")])
    old = datetime.now(timezone.utc) - timedelta(hours=50)
    with pytest.raises(Exception, match=r"data interval ended 50 h ago, more than max_event_age"):
        operator(event="add_to_cart").execute(run_type("scheduled", old))
    operator(event="add_to_cart", max_event_age=timedelta(hours=60)).execute(run_type("scheduled", old))
    assert len(accepted(bluecore_conn, 1)) == 1


def test_allow_backfill_and_profile_events_pass_the_guard(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "product_id"], [("a@b.co", "p1")])
    operator(event="wishlist", allow_backfill=True).execute(run_type("backfill"))
    operator(sql="SELECT distinct_id FROM t").execute(run_type("backfill"))
    assert [b["event"] for b in accepted(bluecore_conn, 2)] == ["wishlist", "customer_patch"]


def test_callable_behavioural_events_in_a_backfill_are_rejected_profile_events_sent(
    warehouse: Warehouse, bluecore_conn: StubBluecore
) -> None:
    warehouse(["id"], [("a@b.co",)])

    def both(row: dict[str, Any]) -> list[dict[str, Any]]:
        props = {"distinct_id": row["id"], "products": [{"id": "p1"}]}
        return [
            {"event": "customer_patch", "properties": {"distinct_id": row["id"]}},
            {"event": "add_to_cart", "properties": props},
        ]

    summary = operator(row_to_event=both, max_rejected=None).execute(run_type("backfill"))
    assert [b["event"] for b in accepted(bluecore_conn, 1)] == ["customer_patch"]
    assert "Refusing to send add_to_cart" in summary["samples"][0]["reasons"][0]


def test_dry_run_sends_nothing_and_logs_only_redacted_samples(
    warehouse: Warehouse, bluecore_conn: StubBluecore, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse(["distinct_id", "email", "tier"], [("cust-001", "jo@example.com", "gold"), ("cust-002", "bad", "x")])
    caplog.set_level("INFO")
    summary = operator(dry_run=True, max_rejected=None).execute({})
    logged = caplog.text + capsys.readouterr().out  # stdlib logging on Airflow 2, structlog's console on Airflow 3
    assert nothing_arrived(bluecore_conn)
    assert (summary["would_send"], summary["rejected"], summary["sent"]) == (2, 1, 0)
    assert "Dry run sample payload 1 (redacted)" in logged
    assert "j***@example.com" in logged
    for secret in ("jo@example.com", "cust-001", "gold"):
        assert secret not in logged


def test_dry_run_reports_every_reject_then_fails_like_the_real_run(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "email"], [("a@b.co", "bad"), ("c@b.co", "c@b.co"), ("d@b.co", "bad")])
    with pytest.raises(Exception, match=r"2 events rejected.*1 valid events would have been sent \(dry run\)"):
        operator(dry_run=True).execute({})
    assert nothing_arrived(bluecore_conn)


def test_a_connection_that_is_not_sql_is_refused(bluecore_conn: StubBluecore) -> None:
    op = SqlToBluecoreOperator(task_id="t", conn_id="bluecore_default", sql="SELECT 1")
    with pytest.raises(Exception, match="not a common-sql DbApiHook"):
        op.execute({})


def test_sql_file_is_rendered_as_a_template(tmp_path: Path, warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    from airflow.providers.common.compat.sdk import DAG  # type: ignore[attr-defined]

    warehouse(["distinct_id", "tier"], [("a@b.co", "gold"), ("c@d.co", "silver")])
    (tmp_path / "gold.sql").write_text("SELECT * FROM t WHERE tier = '{{ params.tier }}'")
    with DAG("templated", schedule=None, start_date=datetime(2025, 1, 1), template_searchpath=[str(tmp_path)]) as dag:
        op = operator(sql="gold.sql", params={"tier": "gold"})
    op.render_template_fields({"params": {"tier": "gold"}}, jinja_env=dag.get_template_env())
    assert op.sql == "SELECT * FROM t WHERE tier = 'gold'"
    op.execute({})
    assert bodies(bluecore_conn, 1) == [("customer_patch", "a@b.co")]


class _SkipEvenRows:
    """A stage like the sync-state layer's: drops some events, records every outcome."""

    def __init__(self) -> None:
        self.recorded: list[tuple[int, str]] = []
        self.closed = False

    def select(self, events: Iterator[MappedEvent]) -> Iterator[MappedEvent]:
        return (m for m in events if m.row % 2)

    def record(self, mapped: MappedEvent, outcome: Outcome) -> None:
        self.recorded.append((mapped.row, outcome.status))

    def summary(self) -> dict[str, Any]:
        return {"recorded": len(self.recorded)}

    def close(self) -> None:
        self.closed = True


def test_a_stage_between_mapping_and_sending_filters_and_records(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    warehouse(["distinct_id", "email"], [("a@b.co", "a@b.co"), ("b@b.co", "b@b.co"), ("c@b.co", "bad")])
    stage = _SkipEvenRows()

    class WithStage(SqlToBluecoreOperator):
        def make_stage(self, context: Any, mapper: RowMapper) -> _SkipEvenRows:
            return stage

    summary = WithStage(task_id="s", conn_id="warehouse", sql="SELECT * FROM t", max_rejected=None).execute({})
    assert bodies(bluecore_conn, 1) == [("customer_patch", "a@b.co")]
    assert sorted(stage.recorded) == [(1, "delivered"), (3, "rejected")]
    assert (summary["recorded"], stage.closed) == (2, True)


def test_openlineage_facets_name_the_query_and_the_bluecore_namespace(warehouse: Warehouse, bluecore_conn: StubBluecore) -> None:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    warehouse(["distinct_id"], [("a@b.co",)])
    lineage = operator(sql="SELECT distinct_id FROM t").get_openlineage_facets_on_complete(None)
    assert lineage.outputs == [Dataset(namespace="bluecore://bluestore", name="customer_patch")]
    assert lineage.job_facets["sql"].query == "SELECT distinct_id FROM t"


def test_openlineage_facets_are_none_without_the_provider(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse(["distinct_id"], [("a@b.co",)])
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    assert operator().get_openlineage_facets_on_complete(None) is None


# -- PostgreSQL: a real server, a server-side cursor --------------------------------------------------------------------


@pytest.fixture
def pg_warehouse(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Connection `warehouse` pointing at the throwaway PostgreSQL; yields an open psycopg2 connection for setup and peeking."""
    import psycopg2

    host_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    port = int(host_port.rsplit(":", 1)[1])
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres", "schema": "postgres"}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(conn))
    db = psycopg2.connect(postgres_url)
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS customers")
        cur.execute("CREATE TABLE customers AS SELECT 'u' || g || '@example.com' AS distinct_id, g % 3 AS tier "
                    "FROM generate_series(1, 300) g")  # fmt: skip
    yield db
    db.close()


def other_backends_queries(db: Any) -> list[str]:
    with db.cursor() as cur:
        cur.execute("SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'postgres'")
        return [row[0] for row in cur.fetchall()]


@pytest.mark.postgres
def test_postgres_rows_stream_through_a_server_side_cursor(pg_warehouse: Any, bluecore_conn: StubBluecore) -> None:
    seen_mid_run: list[str] = []

    def patch(row: dict[str, Any]) -> dict[str, Any]:
        if row["distinct_id"] == "u150@example.com":  # half way: what is the operator's backend doing?
            seen_mid_run.extend(other_backends_queries(pg_warehouse))
        return {"event": "customer_patch", "properties": {"distinct_id": row["distinct_id"], "customer": {"tier": row["tier"]}}}

    sql = "SELECT * FROM customers ORDER BY distinct_id"
    summary = operator(sql=sql, row_to_event=patch, fetch_size=50).execute({})
    assert any(q.startswith("FETCH FORWARD 50 FROM") for q in seen_mid_run), seen_mid_run
    assert (summary["rows_read"], summary["sent"]) == (300, 300)
    assert len({b["properties"]["distinct_id"] for b in accepted(bluecore_conn, 300)}) == 300


@pytest.mark.postgres
def test_postgres_parameters_are_bound_by_the_driver(pg_warehouse: Any, bluecore_conn: StubBluecore) -> None:
    sql = "SELECT distinct_id, tier FROM customers WHERE tier = %(tier)s AND distinct_id LIKE %(pattern)s"
    summary = operator(sql=sql, parameters={"tier": 1, "pattern": "u1_@%"}).execute({})
    expected = ["u10@example.com", "u13@example.com", "u16@example.com", "u19@example.com"]
    assert sorted(key for _, key in bodies(bluecore_conn, 4)) == expected
    assert summary["rows_read"] == 4


@pytest.mark.postgres
def test_postgres_empty_result_sends_nothing(pg_warehouse: Any, bluecore_conn: StubBluecore) -> None:
    summary = operator(sql="SELECT * FROM customers WHERE false;").execute({})
    assert (summary["rows_read"], summary["sent"]) == (0, 0)
    assert nothing_arrived(bluecore_conn)


# -- a real Airflow run ---------------------------------------------------------------------------------------------------


@pytest.mark.airflow_db
def test_dag_test_renders_the_sql_file_sends_and_returns_the_summary(
    airflow_db: str, tmp_path: Path, warehouse: Warehouse, bluecore_conn: StubBluecore
) -> None:
    warehouse(["distinct_id", "email", "tier"], [("c-1", "jo@example.com", "gold"), ("al@example.com", None, "silver")])
    (tmp_path / "customers.sql").write_text("SELECT * FROM t WHERE tier = '{{ params.tier }}'")
    out = tmp_path / "summary.json"
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    source = f"""
        import datetime, json, pathlib
        from airflow.providers.common.compat.sdk import DAG, task
        from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

        with DAG("sql_to_bluecore_test", schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False,
                 template_searchpath=[{str(tmp_path)!r}]) as dag:
            sync = SqlToBluecoreOperator(task_id="sync", conn_id="warehouse", sql="customers.sql", params={{"tier": "gold"}})

            @task
            def keep(summary):
                pathlib.Path({str(out)!r}).write_text(json.dumps(summary))

            keep(sync.output)
    """
    path = dags / "sql_to_bluecore_test.py"
    path.write_text(textwrap.dedent(source))
    run = runpy.run_path(str(path))["dag"].test()
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    assert bodies(bluecore_conn, 2) == [("identify", "c-1"), ("customer_patch", "c-1")]
    assert json.loads(out.read_text())["sent"] == 2


@pytest.mark.postgres
def test_postgres_openlineage_inputs_are_the_tables_of_the_query(pg_warehouse: Any, bluecore_conn: StubBluecore) -> None:
    lineage = operator(sql="SELECT distinct_id FROM customers").get_openlineage_facets_on_complete(None)
    assert [(d.namespace.split(":")[0], d.name) for d in lineage.inputs] == [("postgres", "postgres.public.customers")]
