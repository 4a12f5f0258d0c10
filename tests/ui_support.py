"""Support for the connection-form tests: a real Airflow 3 api-server in a throwaway AIRFLOW_HOME, and headless Chromium.

Nothing here sleeps for a fixed time: every wait polls a condition against a deadline and fails with what it saw.
:func:`free_port` is also what the PostgreSQL and MariaDB fixtures and the closed-port tests listen on or connect to.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

T = TypeVar("T")

#: Flags for Debian's Chromium in a container without a display, a GPU, or a user namespace sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: How long the api-server may take to become healthy (about 20 s on a loaded 2-core machine).
STARTUP_DEADLINE_S = 150.0


def chromium_executable() -> str:
    """The system Chromium (Debian's `chromium`, installed by ``make system-deps``). Missing Chromium fails the test."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium not found on PATH: run `make system-deps` (scripts/system-deps.sh installs Debian's chromium)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (so also a reliably *closed* port to connect to)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, describe: Callable[[], str] = lambda: "") -> T:
    """Poll ``probe`` until it returns something other than None (exceptions count as "not yet"), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            result = probe()
        except Exception as exc:  # not up yet: connection refused, 503 while starting, ...
            last_error = f"{type(exc).__name__}: {exc}"
            result = None
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last error: {last_error or 'none'}\n{describe()}")
        time.sleep(0.25)


class AirflowApiServer:
    """``airflow api-server`` on 127.0.0.1 in its own throwaway AIRFLOW_HOME, with connection testing enabled.

    Every user is an admin (``simple_auth_manager_all_admins``), so neither the browser nor the REST calls need a login.

    :param home: the throwaway AIRFLOW_HOME (created if missing).
    :param database: an already migrated SQLite metadata DB to copy in (saves a ``db migrate``); None migrates a new one.
    :param log_path: where the server's output goes; its tail is shown when the server does not come up.
    """

    def __init__(self, home: Path, *, database: Path | None = None, log_path: Path) -> None:
        self.home = home
        self.database = database
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The server's environment: this process's, less any connection variables, plus the throwaway home and settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.home / 'airflow.db'}",
            AIRFLOW__CORE__DAGS_FOLDER=str(self.home / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        )
        return env

    def start(self) -> AirflowApiServer:
        """Prepare the DB, start the server in its own process group, and return once ``/api/v2/monitor/health`` answers 200."""
        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        airflow = [sys.executable, "-m", "airflow"]
        if self.database is not None:
            shutil.copyfile(self.database, self.home / "airflow.db")
        else:
            migrated = subprocess.run([*airflow, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=300)
            assert migrated.returncode == 0, f"airflow db migrate failed:\n{migrated.stderr[-3000:]}"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1", "--apps", "core"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends the workers too, and only them
            )
        wait_for("the Airflow api-server to become healthy", self._healthy, STARTUP_DEADLINE_S, self.log_tail)
        return self

    def _healthy(self) -> bool | None:
        assert self._process is not None
        if self._process.poll() is not None:
            pytest.fail(f"airflow api-server exited with code {self._process.returncode}\n{self.log_tail()}")
        return True if requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200 else None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.log_path} (tail) ---\n{text[-chars:]}"

    def stop(self) -> None:
        """End the server's process group: SIGTERM, then SIGKILL after 20 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def get(self, path: str) -> Any:
        """``GET`` a JSON document (the all-admins middleware authorises the request)."""
        response = requests.get(f"{self.url}{path}", timeout=30)
        assert response.status_code == 200, f"GET {path}: HTTP {response.status_code}: {response.text[:500]}"
        return response.json()

    def post(self, path: str, body: dict[str, Any], expect: int = 200) -> Any:
        """``POST`` JSON and return the JSON answer, asserting the status."""
        response = requests.post(f"{self.url}{path}", json=body, timeout=30)
        assert response.status_code == expect, f"POST {path}: HTTP {response.status_code}: {response.text[:500]}"
        return response.json()
