"""Shared fixtures. AIRFLOW_HOME points at a throwaway folder before anything imports Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="bluecore-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(_AIRFLOW_HOME) / "dags"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.pop("AIRFLOW_CONN_BLUECORE_DEFAULT", None)

from tests.stub_server import StubBluecore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ARTIFACTS", REPO / "test-artifacts"))
#: Tests marked for the other Airflow major are deselected by design (reported as deselected, never skipped): `make test`
#: runs the suite on both majors, and each major's tests run there.
OTHER_AIRFLOW_MARKER = "airflow2" if int(version("apache-airflow").split(".")[0]) >= 3 else "airflow3"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect `airflow3` tests on Airflow 2 (no api-server UI there) and `airflow2` tests on Airflow 3 (no Flask form)."""
    deselected = [item for item in items if item.get_closest_marker(OTHER_AIRFLOW_MARKER)]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker(OTHER_AIRFLOW_MARKER)]
        config.hook.pytest_deselected(items=deselected)


def pytest_report_header(config: pytest.Config) -> str:
    return f"apache-airflow {version('apache-airflow')}: tests marked {OTHER_AIRFLOW_MARKER} are deselected (other major)"


@pytest.fixture(autouse=True)
def _sync_state_per_test(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own default sync-state file (``[bluecore] state_db``), so one test's deliveries never make
    another's rows look unchanged."""
    monkeypatch.setenv("AIRFLOW__BLUECORE__STATE_DB", str(tmp_path_factory.mktemp("state") / "bluecore_state.db"))


@pytest.fixture
def bluecore_server() -> Iterator[StubBluecore]:
    """A real HTTP server on 127.0.0.1 standing in for Bluecore, recording what it receives."""
    with StubBluecore() as server:
        yield server


def conn_json(host: str, namespace: str = "bluestore", **extra: object) -> str:
    """The JSON form of a `bluecore` connection, as users put it in AIRFLOW_CONN_* variables."""
    return json.dumps({"conn_type": "bluecore", "login": namespace, "host": host, "extra": extra})


@pytest.fixture
def bluecore_conn(bluecore_server: StubBluecore, monkeypatch: pytest.MonkeyPatch) -> StubBluecore:
    """`bluecore_default` pointing at the stub server (namespace `bluestore`, fast retries)."""
    monkeypatch.setenv("AIRFLOW_CONN_BLUECORE_DEFAULT", conn_json(bluecore_server.url, max_retries=3))
    return bluecore_server


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated Airflow metadata DB in the throwaway AIRFLOW_HOME (for dag.test() and the CLI)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL 15 server on 127.0.0.1 (throwaway cluster), as ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    from tests.postgres import postgres_cluster

    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A real MariaDB server on 127.0.0.1 (throwaway data directory), as ``mysql+pymysql://root@127.0.0.1:PORT/bluecore``."""
    from tests.mariadb import mariadb_server

    with mariadb_server() as url:
        yield url
