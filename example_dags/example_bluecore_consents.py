"""Consents: opt-ins and unsubscribes from a consent table, in order, each change sent once.

Use this when consent changes land in the warehouse (a preference centre, a CRM export). One task sends both event types, so a
customer who opted in, unsubscribed and opted in again is tracked as one key whose latest state is sent when it changes; with
two separate tasks the two syncs could not see each other's changes.

``row_to_event`` gives full control over the event: here the event name comes from the ``status`` column. The row with no
e-mail is rejected (``distinct_id`` is required) and reported; every valid row is still sent.
"""

from __future__ import annotations

from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator


def consent_event(row: dict[str, Any]) -> dict[str, Any] | None:
    """One consent row -> an ``optin`` or ``unsubscribe`` event (None skips statuses we do not forward)."""
    if row["status"] not in ("optin", "unsubscribe"):
        return None
    return {"event": row["status"], "properties": {"distinct_id": row["email"], "email": row["email"]}}


with DAG(
    dag_id="example_bluecore_consents",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
) as dag:
    SqlToBluecoreOperator(
        task_id="send_consents",
        conn_id="sample_warehouse",
        # The latest change per e-mail only, oldest first, so the order of changes is kept.
        sql="""
            SELECT email, status, changed_at FROM (
                SELECT email, status, changed_at,
                       ROW_NUMBER() OVER (PARTITION BY email ORDER BY changed_at DESC) AS rn
                FROM consents
            ) WHERE rn = 1
            ORDER BY changed_at
        """,
        event="optin",
        row_to_event=consent_event,
        max_rejected=10,
    )
