"""Behaviour: product views and searches from an event table, for the run's data interval only.

Use this to forward behaviour captured outside Bluecore's website tag (an app backend, a store kiosk). Behavioural events carry
no timestamp: Bluecore takes each one as happening now and may fire live campaigns (an abandoned-browse e-mail) from it. So the
backfill guard is left at its default: a backfill run, or a run whose data interval ended more than 48 hours ago, refuses to
send behavioural events and says why. Set ``allow_backfill=True`` only when you really want old behaviour replayed as new.

The query selects the run's data interval with bind parameters (never string formatting), so each run sends its own slice.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

INTERVAL = {
    "start": "{{ data_interval_start.strftime('%Y-%m-%d %H:%M:%S') }}",
    "end": "{{ data_interval_end.strftime('%Y-%m-%d %H:%M:%S') }}",
}

with DAG(
    dag_id="example_bluecore_behaviour",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
):
    SqlToBluecoreOperator(
        task_id="send_product_views",
        conn_id="sample_warehouse",
        sql="""
            SELECT distinct_id, product_id FROM product_views
            WHERE viewed_at >= :start AND viewed_at < :end
            ORDER BY viewed_at
        """,
        parameters=INTERVAL,
        event="viewed_product",
        max_rejected=0.01,
    )
    SqlToBluecoreOperator(
        task_id="send_searches",
        conn_id="sample_warehouse",
        sql="""
            SELECT distinct_id, search_term FROM searches
            WHERE searched_at >= :start AND searched_at < :end
            ORDER BY searched_at
        """,
        parameters=INTERVAL,
        event="search",
        max_rejected=0.01,
    )
