"""Purchases with their line items, sent once each, after the warehouse has loaded the day's orders.

Use this for order history that lands in the warehouse in batches. A freshness sensor first waits until the ``orders`` load
has reached the end of the run's data interval (deferred to the triggerer, so no worker slot is held while waiting). The query
returns one row per order line, ordered by ``order_id``: consecutive rows of one order become one ``purchase`` with all its
products. Each order is sent once ever (``mode="new"``, the default for purchases): Bluecore has no idempotency key and a
duplicate purchase doubles revenue, so the provider remembers what it delivered.

An order whose ``total`` differs between its lines, or that has no line at all, is rejected with its reason and reported.
"""

from __future__ import annotations

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

from airflow_provider_bluecore.sensors.freshness import SqlFreshnessSensor
from airflow_provider_bluecore.transfers.sql_to_bluecore import SqlToBluecoreOperator

with DAG(
    dag_id="example_bluecore_purchases",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["bluecore", "example"],
    doc_md=__doc__,
) as dag:
    orders_loaded = SqlFreshnessSensor(
        task_id="wait_for_orders",
        conn_id="sample_warehouse",
        sql="SELECT loaded_at FROM loads WHERE table_name = 'orders'",
        deferrable=True,
        poke_interval=30,
        timeout=6 * 60 * 60,
    )
    send_purchases = SqlToBluecoreOperator(
        task_id="send_purchases",
        conn_id="sample_warehouse",
        sql="""
            SELECT o.order_id, o.customer_email AS distinct_id, o.customer_email AS email, o.total,
                   l.product_id, l.price, l.quantity
            FROM orders o LEFT JOIN order_lines l ON l.order_id = o.order_id
            ORDER BY o.order_id, l.line_no
        """,
        event="purchase",
        mapping={"price": "products[].price", "quantity": "products[].quantity"},
        max_rejected=0.01,
    )
    orders_loaded >> send_purchases
