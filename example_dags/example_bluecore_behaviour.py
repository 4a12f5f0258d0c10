"""Behaviour: product views and searches from an event table, for the run's data interval only.

Use this to forward behaviour captured outside Bluecore's website tag (an app backend, a store kiosk). Behavioural events carry
no timestamp: Bluecore takes each one as happening now and may fire live campaigns (an abandoned-browse e-mail) from it. So the
backfill guard is left at its default: a backfill run, or a run whose data interval ended more than 48 hours ago, refuses to
send behavioural events and says why. Set ``allow_backfill=True`` only when you really want old behaviour replayed as new.

Each run reads the 24 hours that end at its ``data_interval_end`` (bind parameters, never string formatting). That is the
data interval of a scheduled daily run, and still a useful window for a run triggered by hand (Airflow 3 gives those a
zero-width interval). Windows may overlap, for example when a run is retried the next day: ``key_column`` names the row id, so
the sync state sends each view once (``mode="new"``, the default with a ``key_column``).
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

WINDOW = {
    "start": "{{ (data_interval_end - macros.timedelta(days=1)).strftime('%Y-%m-%d %H:%M:%S') }}",
    "end": "{{ data_interval_end.strftime('%Y-%m-%d %H:%M:%S') }}",
}

with DAG(
    dag_id="example_bluecore_behaviour",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
) as dag:
    SqlToBluecoreOperator(
        task_id="send_product_views",
        conn_id="sample_warehouse",
        sql="""
            SELECT view_id, distinct_id, product_id FROM product_views
            WHERE viewed_at >= :start AND viewed_at < :end
            ORDER BY viewed_at
        """,
        parameters=WINDOW,
        event="viewed_product",
        key_column="view_id",
        max_rejected=0.01,
    )
    SqlToBluecoreOperator(
        task_id="send_searches",
        conn_id="sample_warehouse",
        sql="""
            SELECT search_id, distinct_id, search_term FROM searches
            WHERE searched_at >= :start AND searched_at < :end
            ORDER BY searched_at
        """,
        parameters=WINDOW,
        event="search",
        key_column="search_id",
        max_rejected=0.01,
    )
