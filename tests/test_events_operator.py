"""BluecoreEventsOperator: direct execute() against the stub server, and real Airflow runs with dag.test()."""

from __future__ import annotations

import json
import os
import runpy
import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_bluecore.exceptions import BluecoreDeliveryError
from airflow_provider_bluecore.operators.events import BluecoreEventsOperator
from tests.stub_server import StubBluecore

INVALID = {"event": "search", "properties": {"distinct_id": "x"}}


def patch(customer: str, seq: int = 0) -> dict[str, Any]:
    return {"event": "customer_patch", "properties": {"distinct_id": customer, "customer": {"seq": seq}}}


def keys(server: StubBluecore) -> list[str]:
    return sorted(b["properties"]["distinct_id"] for b in server.accepted)


def run(events: Any, **kwargs: Any) -> dict[str, Any]:
    return BluecoreEventsOperator(task_id="send", events=events, **kwargs).execute({})


def test_sends_a_list_and_returns_the_report(bluecore_conn: StubBluecore) -> None:
    summary = run([patch("c1"), patch("c2")])
    assert keys(bluecore_conn) == ["c1", "c2"]
    assert (summary["seen"], summary["sent"], summary["failed"]) == (2, 2, 0)
    assert json.loads(json.dumps(summary)) == summary


def test_accepts_a_json_string_and_a_single_event(bluecore_conn: StubBluecore) -> None:
    run(json.dumps([patch("c1")]))
    run(patch("c2"))
    assert keys(bluecore_conn) == ["c1", "c2"]


def test_accepts_a_python_literal_as_rendered_by_jinja(bluecore_conn: StubBluecore) -> None:
    run(str([{"event": "optin", "properties": {"distinct_id": "c1", "email": "a@example.com", "flag": True}}]))
    assert keys(bluecore_conn) == ["c1"]


def test_a_string_that_does_not_parse_fails_naming_the_argument(bluecore_conn: StubBluecore) -> None:
    with pytest.raises(AirflowFailException, match=r"events: a string must be JSON"):
        run("[{'event': ")
    assert bluecore_conn.received == []


def test_any_rejection_fails_after_the_valid_events_were_sent_by_default(bluecore_conn: StubBluecore) -> None:
    with pytest.raises(AirflowFailException, match=r"1 of 3 events were rejected.*properties.search_term"):
        run([patch("c1"), INVALID, patch("c2")])
    assert keys(bluecore_conn) == ["c1", "c2"]


def test_rejections_within_max_rejected_pass(bluecore_conn: StubBluecore) -> None:
    summary = run([patch("c1"), INVALID, patch("c2")], max_rejected=1)
    assert (summary["sent"], summary["rejected"]) == (2, 1)


def test_crossing_max_rejected_fails_without_retry(bluecore_conn: StubBluecore) -> None:
    with pytest.raises(AirflowFailException, match=r"beyond max_rejected \(1 events\)"):
        run([INVALID, INVALID, patch("c1")], max_rejected=1)
    assert bluecore_conn.received == []


def test_partial_failure_fails_without_retry_as_a_retry_would_duplicate(bluecore_conn: StubBluecore) -> None:
    bluecore_conn.state.script = [400]
    with pytest.raises(AirflowFailException, match=r"1 of 2 events could not be delivered.*HTTP 400.*resend the 1 delivered"):
        run([patch("c1"), patch("c2")], concurrency=1)


def test_nothing_delivered_is_an_ordinary_failure_that_task_retries_may_fix(bluecore_conn: StubBluecore) -> None:
    bluecore_conn.state.default = 503
    with pytest.raises(BluecoreDeliveryError, match=r"Nothing was delivered") as info:
        run([patch("c1")])
    assert not isinstance(info.value, AirflowFailException)
    assert info.value.report.failed == 1


def test_concurrency_and_rate_arguments_reach_the_engine(bluecore_conn: StubBluecore) -> None:
    bluecore_conn.state.default = ("delay", 0.05, 202)
    summary = run([patch(f"c{i}") for i in range(12)], concurrency=2)
    assert bluecore_conn.state.peak_in_flight == summary["peak_concurrency"] == 2
    with pytest.raises(AirflowFailException, match="max_events_per_second"):
        run([patch("c1")], max_events_per_second=-1)


# -- real Airflow runs ---------------------------------------------------------------------------------------------------


def run_dag(dag_id: str, body: str) -> Any:
    """Write a DAG into the DAGs folder (Airflow 3 runs only DAGs it can parse) and run it with dag.test()."""
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    header = f"""
        import datetime, json, pathlib
        from airflow.providers.common.compat.sdk import DAG, task
        from airflow_provider_bluecore.operators.events import BluecoreEventsOperator

        with DAG({dag_id!r}, schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False) as dag:
    """
    path = dags / f"{dag_id}.py"
    path.write_text(textwrap.dedent(header) + textwrap.indent(textwrap.dedent(body), "    "))
    return runpy.run_path(str(path))["dag"].test()


def succeeded(dag_run: Any) -> bool:
    return str(dag_run.state) in ("success", "DagRunState.SUCCESS")


@pytest.mark.airflow_db
def test_dag_run_sends_events_from_an_upstream_xcom(airflow_db: str, bluecore_conn: StubBluecore, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    dag_run = run_dag(
        "bluecore_events_xcom",
        f"""
        @task
        def build():
            return [{{"event": "customer_patch", "properties": {{"distinct_id": f"c{{i}}"}}}} for i in range(5)]

        @task
        def keep(report):
            pathlib.Path({str(out)!r}).write_text(json.dumps(report))

        keep(BluecoreEventsOperator(task_id="send", events=build()).output)
        """,
    )
    assert succeeded(dag_run)
    assert keys(bluecore_conn) == [f"c{i}" for i in range(5)]
    assert json.loads(out.read_text())["sent"] == 5


@pytest.mark.airflow_db
def test_mapped_operator_sends_one_batch_per_mapped_task(airflow_db: str, bluecore_conn: StubBluecore, tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    dag_run = run_dag(
        "bluecore_events_mapped",
        f"""
        @task
        def batches():
            def identify(key):
                return {{"event": "identify", "properties": {{"distinct_id": key, "customer": {{"email": "u@example.com"}}}}}}

            return [[identify(f"c{{b}}-{{i}}") for i in range(b + 1)] for b in range(3)]

        @task
        def keep(reports):
            pathlib.Path({str(out)!r}).write_text(json.dumps([r["sent"] for r in reports]))

        keep(BluecoreEventsOperator.partial(task_id="send", max_rejected=0).expand(events=batches()).output)
        """,
    )
    assert succeeded(dag_run)
    assert keys(bluecore_conn) == ["c0-0", "c1-0", "c1-1", "c2-0", "c2-1", "c2-2"]
    assert sorted(json.loads(out.read_text())) == [1, 2, 3]


@pytest.mark.airflow_db
def test_failed_run_pushes_the_report_before_failing(airflow_db: str, bluecore_conn: StubBluecore, tmp_path: Path) -> None:
    out = tmp_path / "failed.json"
    dag_run = run_dag(
        "bluecore_events_rejects",
        f"""
        send = BluecoreEventsOperator(task_id="send", events='[{{"event": "search", "properties": {{"distinct_id": "c1"}}}}]')

        @task(trigger_rule="all_done")
        def keep(ti=None):
            pathlib.Path({str(out)!r}).write_text(json.dumps(ti.xcom_pull(task_ids="send", key="summary")))

        send >> keep()
        """,
    )
    assert str(dag_run.get_task_instance("send").state) in ("failed", "TaskInstanceState.FAILED")
    report = json.loads(out.read_text())
    assert (report["rejected"], report["samples"][0]["key"]) == (1, "***")
    assert bluecore_conn.received == []
