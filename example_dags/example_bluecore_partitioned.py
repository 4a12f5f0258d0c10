"""A large customer table synced as parallel partitions (dynamic task mapping), with the summaries combined.

Use this when one worker is not enough. Each mapped task streams its own slice of the table (here ``customer_id`` modulo the
number of partitions) in bounded memory, and Airflow spreads the mapped tasks over your Celery or Kubernetes workers. The
partitions share one sync state: their keys do not overlap, so they never touch each other's rows. Use a shared state database
(``state_conn_id`` pointing at PostgreSQL, say) once the tasks run on several machines; the default SQLite file under
``$AIRFLOW_HOME`` is only visible to one machine.

Pick the partition count for your throughput: each partition sends with the connection's ``concurrency``, so the total load on
Bluecore is partitions x concurrency requests in flight; ``max_events_per_second`` applies per partition.
"""

from __future__ import annotations

from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.decorators import task  # type: ignore[no-redef]

from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

PARTITIONS = 4

with DAG(
    dag_id="example_bluecore_partitioned",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def partitions() -> list[dict[str, int]]:
        """The bind parameters of each partition."""
        return [{"part": p, "parts": PARTITIONS} for p in range(PARTITIONS)]

    synced = SqlToBluecoreOperator.partial(
        task_id="sync_partition",
        conn_id="sample_warehouse",
        sql="""
            SELECT email AS distinct_id, email, first_name, last_name, loyalty_tier, lifetime_value
            FROM customers
            WHERE CAST(substr(customer_id, 2) AS INTEGER) % :parts = :part
            ORDER BY customer_id
        """,
        event="customer_patch",
        customer_attributes=["first_name", "last_name", "loyalty_tier", "lifetime_value"],
        max_rejected=0.01,
    ).expand(parameters=partitions())

    @task
    def combine(summaries: list[dict[str, Any]]) -> dict[str, Any]:
        """Add up the partitions' summaries into one, as a downstream report or alert would use it."""
        total: dict[str, Any] = {"partitions": 0}
        for summary in summaries:
            total["partitions"] += 1
            for key, value in summary.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        return total

    combine(synced.output)
