"""A throwaway PostgreSQL cluster for tests, started from the server binaries on this machine.

PostgreSQL refuses to run as root, so when the tests run as root (as CI does) the cluster is initialised and started as the
``postgres`` system user. The cluster listens only on 127.0.0.1 on a free port, uses trust authentication, and is removed at the
end of the session. There is no silent skip: a machine without the binaries fails the tests that need them, loudly.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ui_support import free_port


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) were not found; install postgresql")
    return Path(candidates[-1]).parent


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster; yield a SQLAlchemy/psycopg2 URL ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    bindir = _bindir()
    as_root = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="bluecore-pg-"))
    datadir = workdir / "data"
    port = free_port()

    def run(*args: str) -> None:
        cmd = [str(bindir / args[0]), *args[1:]]
        if as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")

    if as_root:
        pw = pwd.getpwnam("postgres")
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
    try:
        run("initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        opts = f"-h 127.0.0.1 -p {port} -k {workdir} -c fsync=off -c full_page_writes=off -c max_connections=100"
        run("pg_ctl", "-D", str(datadir), "-o", opts, "-l", str(workdir / "log"), "-w", "-t", "60", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-D", str(datadir), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
