"""``bluecore state``: the sync state shown and reset from the command line, on a real SQLite state file."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from airflow_provider_bluecore import cli
from airflow_provider_bluecore.sync_state import StateStore

SYNC = "orders_dag.push"


@pytest.fixture
def state() -> StateStore:
    """The default state store (the per-test file from conftest) with one sync: 2 delivered, 1 failed, 1 rejected."""
    store = StateStore(f"sqlite:///{os.environ['AIRFLOW__BLUECORE__STATE_DB']}")
    with store.sync(SYNC) as session:
        session.record("customer_patch:ann@example.com", "f1", "delivered")
        session.record("customer_patch:bob@example.com", "f1", "delivered")
        session.record("customer_patch:cy@example.com", "f1", "failed", attempts=6, reason="HTTP 503", payload=b"{}")
        session.record("customer_patch:dee@example.com", "f1", "rejected", reason="properties.customer.vip: booleans")
    return store


def test_counts_per_status(state: StateStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["state", "counts", SYNC, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"sync_id": SYNC, "delivered": 2, "failed": 1, "rejected": 1}


def test_list_shows_every_sync(state: StateStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["state", "list"]) == 0
    assert [line.split() for line in capsys.readouterr().out.splitlines()[-1:]] == [[SYNC, "2", "1", "1"]]


def test_problems_are_redacted_with_their_reasons(state: StateStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["state", "problems", SYNC]) == 1  # there are problems: scripts can alert on it
    out = capsys.readouterr().out
    assert "failed    customer_patch:c***@example.com  (attempts: 6," in out
    assert "rejected  customer_patch:d***@example.com" in out
    assert "properties.customer.vip: booleans" in out
    assert "cy@example.com" not in out


def test_show_pii_reveals_keys(state: StateStore, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["state", "problems", SYNC, "--status", "failed", "--show-pii", "--json"])
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["key"] == "customer_patch:cy@example.com"


def test_reset_asks_and_keeps_the_state_unless_confirmed(
    state: StateStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert cli.main(["state", "reset", SYNC]) == 1
    assert "(4 keys)" in capsys.readouterr().out
    assert state.sync(SYNC).counts()["delivered"] == 2


def test_reset_after_confirmation(state: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert cli.main(["state", "reset", SYNC]) == 0
    assert state.sync_ids() == []


def test_reset_yes_needs_no_terminal(state: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["state", "reset", SYNC, "--yes"]) == 0
    assert state.sync_ids() == []


def test_an_unknown_sync_is_a_usage_error_listing_the_known_ones(state: StateStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["state", "counts", "nope"]) == 2
    assert "no state for 'nope'" in capsys.readouterr().err


def test_the_state_of_an_airflow_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere.db"
    with StateStore(f"sqlite:///{path}") as store, store.sync(SYNC) as session:
        session.record("purchase:o-1", "f1", "delivered")
    monkeypatch.setenv("AIRFLOW_CONN_SYNC_STATE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    assert cli.main(["state", "counts", SYNC, "--state-conn-id", "sync_state", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["delivered"] == 1


def test_an_unknown_state_connection_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["state", "list", "--state-conn-id", "no_such_conn"]) == 2
    assert "--state-conn-id: no connection 'no_such_conn'" in capsys.readouterr().err
