"""Customer attributes: keep Bluecore's customer profiles in step with the warehouse, sending only changed customers.

Use this when a table (or view) holds one row per customer with the attributes your campaigns use. Each run reads every
customer, compares each one's fingerprint with what was last delivered, and sends a ``customer_patch`` only for customers that
are new or changed (``mode="changed"``, the default for ``customer_patch``). A retry or a rerun never sends a customer twice.

``customer_attributes`` is an allowlist: Bluecore creates an attribute permanently the first time it sees it, so a column added
to the view by mistake stops the task before anything is sent instead of creating a stray attribute for every customer.

Connections: ``sample_warehouse`` (any SQL database; SQLite here) and ``bluecore_default``.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

with DAG(
    dag_id="example_bluecore_customer_attributes",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
) as dag:
    SqlToBluecoreOperator(
        task_id="sync_customers",
        conn_id="sample_warehouse",
        sql="""
            SELECT email AS distinct_id, email, first_name, last_name, loyalty_tier, lifetime_value, signup_date
            FROM customers
            ORDER BY customer_id
        """,
        event="customer_patch",
        customer_attributes=["first_name", "last_name", "loyalty_tier", "lifetime_value", "signup_date"],
        max_rejected=0.01,
    )
