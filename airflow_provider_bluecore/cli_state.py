"""``bluecore state``: look into and reset the sync state (see :mod:`airflow_provider_bluecore.cli` and docs/state-store.md).

``bluecore state list``                    every sync with state, and its counts
``bluecore state counts SYNC_ID``          keys per status of one sync
``bluecore state problems SYNC_ID``        the rejected and failed keys with their reasons (redacted unless ``--show-pii``)
``bluecore state reset SYNC_ID``           forget one sync (asks first; ``--yes`` for scripts)

The store is the one the operator uses by default (``[bluecore] state_db``, else ``$AIRFLOW_HOME/bluecore_state.db``), or
``--state-conn-id`` (an Airflow connection) or ``--state-url`` (a SQLAlchemy URL).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_bluecore.cli import EXIT_OK, EXIT_PROBLEMS, CommandError, add_command

if TYPE_CHECKING:
    from airflow_provider_bluecore.sync_state import StateStore

__all__ = ["add_parser", "run_counts", "run_list", "run_problems", "run_reset"]


def add_parser(subparsers: Any) -> None:
    """Add ``bluecore state`` and its subcommands."""
    parser = add_command(
        subparsers,
        "state",
        help="look into or reset the sync state that SqlToBluecoreOperator keeps",
        description="""
            SqlToBluecoreOperator remembers, per sync (by default <dag_id>.<task_id>) and per event key, what it delivered,
            what failed (kept, to resend on the next run) and what was rejected (skipped until the row changes). These
            commands show that state and reset one sync, so that its next run sends everything again.

            Keys identify customers: they are redacted (j***@example.com) unless --show-pii is given.
        """,
        examples=[
            "bluecore state list",
            "bluecore state counts my_dag.push_customers",
            "bluecore state problems my_dag.push_customers --status failed --show-pii",
            "bluecore state reset my_dag.push_customers --state-conn-id sync_state_db",
        ],
    )
    commands = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    def sub(name: str, help: str, handler: Any, with_sync: bool = True) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler, command_name=f"state {name}")
        if with_sync:
            p.add_argument("sync_id", help="the sync, e.g. my_dag.push_customers (see `bluecore state list`)")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--state-conn-id", help="the Airflow connection holding the state (the operator's state_conn_id)")
        where.add_argument("--state-url", help="a SQLAlchemy URL of the state database, e.g. postgresql://user@host/db")
        return p

    sub("list", "every sync with state in the store, with its counts", run_list, with_sync=False).add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    sub("counts", "keys per status (delivered, failed, rejected) of one sync", run_counts).add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    problems = sub("problems", "the rejected and failed keys of one sync, with their reasons", run_problems)
    problems.add_argument("--status", choices=["failed", "rejected"], help="only this status")
    problems.add_argument("--limit", type=int, default=50, help="list at most this many keys, most recent first")
    problems.add_argument("--show-pii", action="store_true", help="show keys in full (customer ids and e-mail addresses)")
    problems.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    reset = sub("reset", "forget everything about one sync: its next run sends every row again", run_reset)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


@contextmanager
def _open_store(args: argparse.Namespace) -> Iterator[StateStore]:
    """The store named by the arguments; Airflow's log lines go to standard error, which keeps ``--json`` output clean."""
    from airflow_provider_bluecore.sync_state import StateStore

    if args.state_url:
        with StateStore(args.state_url) as store:
            yield store
        return
    from airflow_provider_bluecore.cli_events import _airflow_logs_to_stderr
    from airflow_provider_bluecore.transfers.sync_state_support import open_state_store  # imports Airflow: only here

    with _airflow_logs_to_stderr():
        try:
            store = open_state_store(args.state_conn_id)
        except Exception as exc:
            if type(exc).__name__ == "AirflowNotFoundException":
                raise CommandError(f"--state-conn-id: no connection {args.state_conn_id!r}") from exc
            raise
        with store:
            yield store


def _where(store: StateStore) -> str:
    return store.engine.url.render_as_string(hide_password=True)


def _known(store: StateStore, sync_id: str) -> None:
    if sync_id not in store.sync_ids():
        known = ", ".join(store.sync_ids()[:10]) or "none"
        raise CommandError(f"sync_id: no state for {sync_id!r} in {_where(store)} (syncs with state: {known})")


def run_list(args: argparse.Namespace) -> int:
    """``bluecore state list``."""
    with _open_store(args) as store:
        rows = [(sync_id, store.sync(sync_id).counts()) for sync_id in store.sync_ids()]
        if args.json:
            print(json.dumps([{"sync_id": sync_id, **counts} for sync_id, counts in rows]))
            return EXIT_OK
        print(f"state store: {_where(store)}")
        if not rows:
            print("no sync has state yet")
        width = max([len(s) for s, _ in rows] + [7])
        if rows:
            print(f"{'sync_id':<{width}}  {'delivered':>10}  {'failed':>8}  {'rejected':>8}")
        for sync_id, c in rows:
            print(f"{sync_id:<{width}}  {c['delivered']:>10}  {c['failed']:>8}  {c['rejected']:>8}")
    return EXIT_OK


def run_counts(args: argparse.Namespace) -> int:
    """``bluecore state counts SYNC_ID``."""
    with _open_store(args) as store:
        _known(store, args.sync_id)
        counts = store.sync(args.sync_id).counts()
        if args.json:
            print(json.dumps({"sync_id": args.sync_id, **counts}))
        else:
            print(f"sync {args.sync_id} in {_where(store)}")
            for status, n in counts.items():
                print(f"  {status:<10} {n:>10}")
    return EXIT_OK


def run_problems(args: argparse.Namespace) -> int:
    """``bluecore state problems SYNC_ID``: exits 1 when there are any."""
    if args.limit < 1:
        raise CommandError("--limit: must be at least 1")
    with _open_store(args) as store:
        _known(store, args.sync_id)
        problems = store.sync(args.sync_id).problems(limit=args.limit, show_pii=args.show_pii, status=args.status)
    for p in problems:
        when = p.updated_at.isoformat(sep=" ", timespec="seconds") if p.updated_at else ""
        if args.json:
            print(json.dumps({"key": p.key, "event": p.event_name, "status": p.status, "attempts": p.attempts,
                              "reason": p.reason, "updated_at": when}))  # fmt: skip
        else:
            print(f"{p.status:<8}  {p.key}  (attempts: {p.attempts}, last {when} UTC): {p.reason or 'no reason recorded'}")
    if not problems and not args.json:
        print(f"sync {args.sync_id}: no {args.status or 'rejected or failed'} keys")
    return EXIT_PROBLEMS if problems else EXIT_OK


def run_reset(args: argparse.Namespace) -> int:
    """``bluecore state reset SYNC_ID``: asks for confirmation unless ``--yes``."""
    with _open_store(args) as store:
        _known(store, args.sync_id)
        session = store.sync(args.sync_id)
        total = sum(session.counts().values())
        if not args.yes:
            prompt = (
                f"Forget the state of sync {args.sync_id!r} ({total} keys) in {_where(store)}? "
                "Its next run sends every row again. [y/N] "
            )
            try:
                answer = input(prompt)
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("not reset (confirm with y, or pass --yes)", file=sys.stderr)
                return EXIT_PROBLEMS
        deleted = session.reset()
    print(f"sync {args.sync_id}: forgot {deleted} keys; its next run sends every row again")
    return EXIT_OK
