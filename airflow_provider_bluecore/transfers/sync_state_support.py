"""Airflow side of the sync state: which database holds it, which sync and partition a task instance is.

The state itself is the plain module :mod:`airflow_provider_bluecore.sync_state`; this module only resolves Airflow things
(a connection id, ``$AIRFLOW_HOME``, the task instance's ids and map index) into it, for
:class:`~airflow_provider_bluecore.transfers.sql_to_bluecore.SqlToBluecoreOperator` and the ``bluecore state`` CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook, conf

from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.sync_stage import SyncStateStage
from airflow_provider_bluecore.sync_state import MODES, StateStore, default_mode

__all__ = ["default_state_url", "make_sync_state_stage", "open_state_store"]

STATE_FILE = "bluecore_state.db"


def default_state_url() -> str:
    """``[bluecore] state_db`` (a path or SQLAlchemy URL) when set, else an SQLite file under ``$AIRFLOW_HOME``."""
    configured = conf.get("bluecore", "state_db", fallback=None)
    if configured:
        return configured if "://" in configured else f"sqlite:///{Path(configured).expanduser()}"
    home = Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()
    return f"sqlite:///{home / STATE_FILE}"


def _connection_url(state_conn_id: str) -> str:
    conn = BaseHook.get_connection(state_conn_id)
    try:
        hook = conn.get_hook()
    except Exception:  # a connection type without an installed hook still has a URI
        hook = None
    url = hook.get_uri() if hook is not None and hasattr(hook, "get_uri") else conn.get_uri()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]  # Airflow's scheme; SQLAlchemy knows only postgresql://
    return str(url)


def open_state_store(state_conn_id: str | None = None) -> StateStore:
    """The state store of ``state_conn_id``, or the default one (see :func:`default_state_url`)."""
    return StateStore(_connection_url(state_conn_id) if state_conn_id else default_state_url())


def make_sync_state_stage(operator: Any, context: Any) -> SyncStateStage | None:
    """The state stage of one SqlToBluecoreOperator run, or None in mode ``all`` (no state read or written)."""
    mode = operator.mode or default_mode(operator.event, operator.key_column)
    if mode not in MODES:
        raise BluecoreConfigError(f"mode: must be one of {', '.join(MODES)}, not {operator.mode!r}")
    if mode == "all":
        return None
    ti = context.get("ti") if isinstance(context, Mapping) else None
    dag_id = getattr(ti, "dag_id", None) or operator.dag_id
    sync_id = operator.sync_id or f"{dag_id}.{operator.task_id}"
    map_index = getattr(ti, "map_index", -1)
    partition = str(map_index) if isinstance(map_index, int) and map_index >= 0 else ""
    store = open_state_store(operator.state_conn_id)
    try:
        session = store.sync(sync_id, partition=partition)
    except BaseException:
        store.close()
        raise
    where = operator.state_conn_id or "the default SQLite file"
    operator.log.info(
        "Sync state: sync_id %s%s, mode %s, in %s", sync_id, f" (partition {partition})" * bool(partition), mode, where
    )
    return SyncStateStage(store, session, mode, owns_store=True, logger=operator.log)
