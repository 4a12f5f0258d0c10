"""SqlFreshnessSensor and its trigger, against a real SQLite warehouse and real Airflow runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import runpy
import sqlite3
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.sensors.freshness import SqlFreshnessSensor
from airflow_provider_bluecore.triggers.freshness import SqlFreshnessTrigger, check_freshness, parse_target

UTC = dt.timezone.utc
TARGET = dt.datetime(2024, 1, 2, tzinfo=UTC)
MAX_LOADED = "SELECT max(updated_at) FROM loads"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real SQLite warehouse behind the connection ``warehouse``, with an empty ``loads`` table."""
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE loads (updated_at TEXT, batch INTEGER)")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def load(path: Path, updated_at: str, batch: int = 0) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO loads VALUES (?, ?)", (updated_at, batch))


def sensor(**kwargs: Any) -> SqlFreshnessSensor:
    return SqlFreshnessSensor(**{"task_id": "wait", "conn_id": "warehouse", "sql": MAX_LOADED, **kwargs})


# -- the comparison rules ----------------------------------------------------------------------------------------------


def test_a_naive_datetime_is_taken_as_utc_and_says_so() -> None:
    check = check_freshness(dt.datetime(2024, 1, 2), TARGET)
    assert check.fresh
    assert check.value == "2024-01-02T00:00:00+00:00"
    assert check.notes == ("a naive datetime is taken as UTC",)


def test_an_aware_datetime_is_compared_in_its_own_zone() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert not check_freshness(dt.datetime(2024, 1, 2, 0, 30, tzinfo=paris), TARGET).fresh
    assert check_freshness(dt.datetime(2024, 1, 2, 1, 0, tzinfo=paris), TARGET).fresh


def test_a_date_counts_as_the_end_of_that_day() -> None:
    assert check_freshness(dt.date(2024, 1, 1), TARGET).fresh
    assert not check_freshness(dt.date(2023, 12, 31), TARGET).fresh
    assert check_freshness("2024-01-01", TARGET).fresh


def test_iso_strings_are_parsed() -> None:
    assert not check_freshness("2024-01-01 23:59:59", TARGET).fresh
    assert check_freshness("2024-01-02T00:00:00Z", TARGET).fresh
    assert check_freshness("2024-01-02T02:00:00+02:00", TARGET).fresh


def test_numbers_are_compared_with_a_numeric_target() -> None:
    assert check_freshness(42, parse_target(42)).fresh
    assert not check_freshness(Decimal("41.5"), parse_target("42")).fresh
    assert check_freshness(42.0, parse_target(Decimal(42))).fresh


def test_null_is_never_fresh() -> None:
    check = check_freshness(None, TARGET)
    assert not check.fresh
    assert check.value is None


def test_a_value_that_cannot_meet_the_target_is_a_configuration_error() -> None:
    with pytest.raises(BluecoreConfigError, match="not a datetime, a date or an ISO 8601 string"):
        check_freshness(1700000000, TARGET)
    with pytest.raises(BluecoreConfigError, match="target"):
        parse_target("yesterday")


# -- poking a real database --------------------------------------------------------------------------------------------


def test_poke_waits_for_the_data_interval_end(warehouse: Path) -> None:
    context = {"data_interval_end": TARGET}
    load(warehouse, "2024-01-01 18:00:00")
    assert sensor().poke(context) is False
    load(warehouse, "2024-01-02 00:05:00")
    done = sensor().poke(context)
    assert done
    assert done.xcom_value == "2024-01-02T00:05:00+00:00"  # type: ignore[union-attr]


def test_poke_uses_a_given_target_and_bind_parameters(warehouse: Path) -> None:
    load(warehouse, "", batch=7)
    check = sensor(sql="SELECT max(batch) FROM loads WHERE batch < ?", parameters=[100], target="7")
    assert check.poke({"data_interval_end": TARGET})


def test_poke_on_an_empty_table_is_not_fresh(warehouse: Path) -> None:
    assert sensor().poke({"data_interval_end": TARGET}) is False


def test_no_target_and_no_data_interval_is_a_configuration_error(warehouse: Path) -> None:
    with pytest.raises(BluecoreConfigError, match="target: the run has no data_interval_end"):
        sensor().poke({"data_interval_end": None})


# -- the trigger ---------------------------------------------------------------------------------------------------------


def test_the_trigger_serializes_to_what_rebuilds_it() -> None:
    trigger = SqlFreshnessTrigger("warehouse", MAX_LOADED, "2024-01-02T00:00:00+00:00", [1], 5.0, 1700000000.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_bluecore.triggers.freshness.SqlFreshnessTrigger"
    assert SqlFreshnessTrigger(**kwargs).serialize() == (classpath, kwargs)


def first_event(trigger: SqlFreshnessTrigger) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout=30))


def test_the_trigger_polls_until_fresh(warehouse: Path) -> None:
    load(warehouse, "2024-01-01 00:00:00")
    threading.Timer(0.5, load, args=(warehouse, "2024-01-02 06:00:00")).start()
    event = first_event(SqlFreshnessTrigger("warehouse", MAX_LOADED, TARGET.isoformat(), poll_interval=0.1))
    assert event == {"status": "fresh", "value": "2024-01-02T06:00:00+00:00", "target": TARGET.isoformat()}


def test_the_trigger_gives_up_at_its_deadline_with_the_value_reached(warehouse: Path) -> None:
    load(warehouse, "2024-01-01 00:00:00")
    trigger = SqlFreshnessTrigger("warehouse", MAX_LOADED, TARGET.isoformat(), poll_interval=0.1, deadline=time.time() + 0.3)
    assert first_event(trigger)["status"] == "timeout"
    assert first_event(trigger)["value"] == "2024-01-01T00:00:00+00:00"


# -- real Airflow runs ---------------------------------------------------------------------------------------------------


def run_dag(dag_id: str, sensor_args: str, **test_kwargs: Any) -> Any:
    if "sql=" not in sensor_args:
        sensor_args = f"sql={MAX_LOADED!r}, {sensor_args}"
    """Write a one-sensor DAG into the DAGs folder (Airflow 3 runs only DAGs it can parse), run it with dag.test()."""
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    source = f"""
        import datetime
        from airflow import DAG
        from airflow_provider_bluecore.sensors.freshness import SqlFreshnessSensor

        with DAG({dag_id!r}, schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False) as dag:
            SqlFreshnessSensor(task_id="wait", conn_id="warehouse", {sensor_args})
    """
    path = dags / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source))
    dag = runpy.run_path(str(path))["dag"]
    return dag.test(**test_kwargs).get_task_instance("wait")


def load_when(warehouse: Path, state: str, updated_at: str) -> threading.Thread:
    """Load fresh data once the sensor's task instance is seen in ``state`` in the metadata DB (so it has poked)."""

    def watch() -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with create_session() as session:
                if session.query(TaskInstance).filter_by(task_id="wait", state=state).count():
                    load(warehouse, updated_at)
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.airflow_db
def test_deferrable_sensor_defers_then_succeeds(airflow_db: str, warehouse: Path) -> None:
    """The source clock passes a target 3 s after rendering: the first check fails, only the trigger can succeed."""
    now = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
    target = "{{ macros.datetime.utcnow() + macros.timedelta(seconds=3) }}"
    ti = run_dag("freshness_deferred", f"sql={now!r}, target={target!r}, deferrable=True, poke_interval=0.2, timeout=60")
    assert ti.state == "success"


@pytest.mark.airflow_db
def test_deferrable_sensor_times_out_naming_the_value_and_target(
    airflow_db: str, warehouse: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    load(warehouse, "2024-01-01 00:00:00")
    ti = run_dag("freshness_deferred_timeout", 'target="2029-01-01", deferrable=True, poke_interval=0.2, timeout=1')
    assert ti.state == "failed"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "the value reached 2024-01-01T00:00:00+00:00, the target is 2029-01-01T00:00:00+00:00" in logs


@pytest.mark.airflow_db
def test_reschedule_mode_frees_the_slot_then_succeeds(airflow_db: str, warehouse: Path) -> None:
    load(warehouse, "2024-01-01 00:00:00")
    load_when(warehouse, "up_for_reschedule", "2030-01-01 00:00:00")
    ti = run_dag("freshness_reschedule", 'target="2029-01-01", mode="reschedule", poke_interval=1, timeout=60')
    assert ti.state == "success"


@pytest.mark.airflow_db
def test_poke_mode_times_out_naming_the_value_and_target(
    airflow_db: str, warehouse: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    load(warehouse, "2024-01-01 00:00:00")
    ti = run_dag("freshness_poke_timeout", 'target="2029-01-01", poke_interval=0.2, timeout=1')
    assert ti.state == "failed"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "not fresh after 1 s: the value reached 2024-01-01T00:00:00+00:00, the target is 2029-01-01T00:00:00+00:00" in logs
