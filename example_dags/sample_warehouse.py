"""Builds the sample SQLite warehouse the example DAGs read from (used by ``make demo`` and the tests).

Run it yourself with ``python example_dags/sample_warehouse.py PATH [--customers N]``. Deterministic: the same seed gives the
same rows. Tables:

* ``customers``: one row per customer, keyed by ``customer_id``, with an e-mail and a few attributes, and ``updated_at``;
* ``orders`` and ``order_lines``: purchases with their line items (several products per order);
* ``devices``: mobile device ids and the e-mail they belong to (for ``identify``);
* ``consents``: opt-ins and unsubscribes by e-mail;
* ``product_views`` and ``searches``: recent behaviour, some by e-mail, some by device id;
* ``loads``: when each table was last loaded (what the freshness sensor watches).

A few rows are deliberately bad (an invalid e-mail, an order without lines, a view without a product, a consent without an
e-mail) so that the demo shows rejections with their reasons, and nothing valid is lost because of them.

:func:`apply_daily_changes` edits a handful of customers and adds a few orders, so that a second sync sends only what changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
from pathlib import Path

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Margaret", "Linus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee"]
TIERS = ["bronze", "silver", "gold", "platinum"]
PRODUCTS = [f"SKU-{n:04d}" for n in range(1, 201)]
SEARCH_TERMS = ["running shoes", "rain jacket", "gift card", "wool socks", "backpack", "sunglasses", "yoga mat"]

SCHEMA = """
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, loyalty_tier TEXT,
    is_vip BOOLEAN, lifetime_value NUMERIC, signup_date DATE, updated_at TIMESTAMP
);
CREATE TABLE orders (order_id TEXT PRIMARY KEY, customer_email TEXT, total NUMERIC, ordered_at TIMESTAMP);
CREATE TABLE order_lines (order_id TEXT, line_no INTEGER, product_id TEXT, quantity INTEGER, price NUMERIC);
CREATE TABLE devices (device_id TEXT PRIMARY KEY, email TEXT, first_seen TIMESTAMP);
CREATE TABLE consents (email TEXT, status TEXT, changed_at TIMESTAMP);
CREATE TABLE product_views (view_id INTEGER PRIMARY KEY, distinct_id TEXT, product_id TEXT, viewed_at TIMESTAMP);
CREATE TABLE searches (search_id INTEGER PRIMARY KEY, distinct_id TEXT, search_term TEXT, searched_at TIMESTAMP);
CREATE TABLE loads (table_name TEXT PRIMARY KEY, loaded_at TIMESTAMP);
"""


def _email(i: int) -> str:
    return f"customer{i:05d}@example.com"


def build(path: str | Path, customers: int = 3000, seed: int = 7, now: dt.datetime | None = None) -> Path:
    """Create (or replace) the warehouse at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    rng = random.Random(seed)
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0, tzinfo=None)
    con = sqlite3.connect(path)
    with con:
        con.executescript(SCHEMA)
        rows = []
        for i in range(customers):
            rows.append(
                (
                    f"C{i:05d}",
                    _email(i),
                    rng.choice(FIRST_NAMES),
                    rng.choice(LAST_NAMES),
                    rng.choice(TIERS),
                    rng.random() < 0.1,
                    round(rng.uniform(0, 5000), 2),
                    (now - dt.timedelta(days=rng.randint(1, 2000))).date().isoformat(),
                    (now - dt.timedelta(hours=rng.randint(1, 72))).isoformat(sep=" "),
                )
            )
        rows[17] = (*rows[17][:1], "not-an-email", *rows[17][2:])  # deliberately bad: rejected, reported
        con.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?,?,?)", rows)

        orders, lines = [], []
        for n in range(customers // 2):
            order_id = f"O{n:06d}"
            items = [rng.choice(PRODUCTS) for _ in range(rng.randint(1, 4))]
            prices = [round(rng.uniform(5, 150), 2) for _ in items]
            orders.append((order_id, _email(rng.randrange(customers)), round(sum(prices), 2), _ago(now, rng, 20)))
            lines += [(order_id, k + 1, p, 1, price) for k, (p, price) in enumerate(zip(items, prices, strict=True))]
        orders.append(("O-NO-LINES", _email(3), 10.0, now.isoformat(sep=" ")))  # deliberately bad: no products
        con.executemany("INSERT INTO orders VALUES (?,?,?,?)", orders)
        con.executemany("INSERT INTO order_lines VALUES (?,?,?,?,?)", lines)

        devices = [(f"device-{i:05d}-{rng.getrandbits(32):08x}", _email(i), _ago(now, rng, 72)) for i in range(0, customers, 7)]
        con.executemany("INSERT INTO devices VALUES (?,?,?)", devices)

        consents = [
            (_email(i), rng.choice(["optin", "optin", "unsubscribe"]), _ago(now, rng, 24)) for i in range(0, customers, 5)
        ]
        consents.append((None, "optin", now.isoformat(sep=" ")))  # deliberately bad: no e-mail
        con.executemany("INSERT INTO consents VALUES (?,?,?)", consents)

        ids = [_email(i) for i in range(customers)] + [d[0] for d in devices]
        views = [(rng.choice(ids), rng.choice(PRODUCTS), _ago(now, rng, 48)) for _ in range(customers)]
        views.append((_email(5), None, now.isoformat(sep=" ")))  # deliberately bad: no product
        con.executemany("INSERT INTO product_views (distinct_id, product_id, viewed_at) VALUES (?,?,?)", views)
        searches = [(rng.choice(ids), rng.choice(SEARCH_TERMS), _ago(now, rng, 48)) for _ in range(customers // 3)]
        con.executemany("INSERT INTO searches (distinct_id, search_term, searched_at) VALUES (?,?,?)", searches)

        tables = ("customers", "orders", "devices", "consents", "product_views", "searches")
        con.executemany("INSERT INTO loads VALUES (?,?)", [(t, now.isoformat(sep=" ")) for t in tables])
    con.close()
    return path


def _ago(now: dt.datetime, rng: random.Random, hours: int) -> str:
    return (now - dt.timedelta(minutes=rng.randint(1, hours * 60))).isoformat(sep=" ")


def apply_daily_changes(path: str | Path, run: int, changed_customers: int = 25, new_orders: int = 10) -> None:
    """Simulate a day of warehouse loads: edit some customers, add some orders, bump the load times."""
    rng = random.Random(1000 + run)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None).isoformat(sep=" ")
    con = sqlite3.connect(path)
    with con:
        total = con.execute("SELECT count(*) FROM customers").fetchone()[0]
        for i in rng.sample(range(total), changed_customers):
            con.execute(
                "UPDATE customers SET loyalty_tier = ?, lifetime_value = lifetime_value + ?, updated_at = ?"
                " WHERE customer_id = ?",
                (rng.choice(TIERS), round(rng.uniform(10, 100), 2), now, f"C{i:05d}"),
            )
        for n in range(new_orders):
            order_id = f"O-R{run:03d}-{n:03d}"
            price = round(rng.uniform(5, 150), 2)
            con.execute("INSERT INTO orders VALUES (?,?,?,?)", (order_id, _email(rng.randrange(total)), price, now))
            con.execute("INSERT INTO order_lines VALUES (?,?,?,?,?)", (order_id, 1, rng.choice(PRODUCTS), 1, price))
        con.execute("UPDATE loads SET loaded_at = ?", (now,))
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="SQLite file to create (replaced if it exists)")
    parser.add_argument("--customers", type=int, default=3000)
    args = parser.parse_args()
    print(build(args.path, customers=args.customers))


if __name__ == "__main__":
    main()
