"""A throwaway MariaDB server for tests, started from Debian's ``mariadb-server`` binaries (``make system-deps`` installs them).

It stands in for MySQL, the other common choice for a shared sync-state database. The server gets its own data directory,
listens only on 127.0.0.1 on a free port, lets ``root`` in without a password, and is removed at the end of the session. As
root (CI) it runs with ``--user=root``. There is no silent skip: a machine without the binaries fails the tests that need them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ui_support import free_port

DATABASE = "bluecore"


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
        if found:
            return found
    raise RuntimeError(f"MariaDB server binaries ({', '.join(names)}) were not found; run `make system-deps`")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def mariadb_server() -> Iterator[str]:
    """Start a server; yield a SQLAlchemy URL ``mysql+pymysql://root@127.0.0.1:PORT/bluecore`` (the database exists)."""
    server, install = _binary("mariadbd", "mysqld"), _binary("mariadb-install-db", "mysql_install_db")
    workdir = Path(tempfile.mkdtemp(prefix="bluecore-mariadb-"))
    datadir, port = workdir / "data", free_port()
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses to run as root unless told to
    try:
        subprocess.run(
            [install, "--no-defaults", f"--datadir={datadir}", *as_root, "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            check=True, capture_output=True, cwd="/",
        )  # fmt: skip
        process = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={datadir}", *as_root, f"--port={port}", "--bind-address=127.0.0.1",
             f"--socket={workdir / 'sock'}", f"--pid-file={workdir / 'pid'}", f"--log-error={workdir / 'error.log'}",
             "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not _accepts(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "error.log").read_text(errors="replace")[-2000:] if (workdir / "error.log").exists() else ""
                    raise RuntimeError(f"MariaDB did not start on 127.0.0.1:{port}:\n{log}")
                time.sleep(0.1)
            import pymysql

            db = pymysql.connect(host="127.0.0.1", port=port, user="root")
            with db.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            db.close()
            yield f"mysql+pymysql://root@127.0.0.1:{port}/{DATABASE}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
