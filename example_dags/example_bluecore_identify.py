"""Identify: link mobile device ids to customers' e-mail addresses.

Bluecore's reference page requires an ``identify`` event for every new non-email ``distinct_id``, so that behaviour recorded
under a device id joins the customer's profile. Use this when the warehouse keeps a device -> e-mail table. Each device is sent
once and again only if its e-mail changes (``mode="changed"``).

(``SqlToBluecoreOperator`` also does this inline: with ``auto_identify=True``, the default, a row whose ``distinct_id`` is not an
e-mail but which has an ``email`` column is preceded by an ``identify``.)
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

with DAG(
    dag_id="example_bluecore_identify",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
) as dag:
    SqlToBluecoreOperator(
        task_id="identify_devices",
        conn_id="sample_warehouse",
        sql="SELECT device_id AS distinct_id, email FROM devices ORDER BY device_id",
        event="identify",
    )
