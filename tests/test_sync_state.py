"""The sync state store, on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.sync_state import (
    SCHEMA_VERSION,
    Decision,
    StateStore,
    default_mode,
    event_key,
    fingerprint,
)

JANE = "customer_patch:jane@example.com"


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """A fresh store: an SQLite file, or its own tables on the test PostgreSQL or MariaDB server."""
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue(f"{request.param}_url")
    with StateStore(url, table_prefix=f"t{uuid.uuid4().hex[:8]}_") as s:
        yield s


def test_tables_are_created_on_first_use_with_a_version_row(store: StateStore) -> None:
    assert store.schema_version() is None
    store.sync("dag.task")
    assert store.schema_version() == SCHEMA_VERSION


def test_a_store_written_by_a_newer_version_is_refused(store: StateStore) -> None:
    store.sync("dag.task")
    with store.engine.begin() as conn:
        conn.execute(store.meta_table.update().values(value=str(SCHEMA_VERSION + 1)))
    newer = StateStore(store.engine, table_prefix=store.meta_table.name.removesuffix("state_meta"))
    with pytest.raises(BluecoreConfigError, match="newer than this provider supports"):
        newer.sync("dag.task")


def test_changed_mode_skips_unchanged_and_sends_changed(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "delivered")
    session = store.sync("dag.task")
    assert session.decide([(JANE, "fp1"), (JANE, "fp2"), ("customer_patch:new", "fp1")], "changed") == [
        Decision.SKIP_UNCHANGED,
        Decision.SEND,
        Decision.SEND,
    ]


def test_new_mode_skips_any_key_delivered_before(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record("purchase:o-1", "fp1", "delivered")
    decisions = store.sync("dag.task").decide([("purchase:o-1", "fp2"), ("purchase:o-2", "fp1")], "new")
    assert decisions == [Decision.SKIP_DELIVERED, Decision.SEND]


def test_all_mode_sends_everything(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "delivered")
    assert store.sync("dag.task").decide([(JANE, "fp1")], "all") == [Decision.SEND]


def test_a_rejected_row_is_not_resent_until_it_changes(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "rejected", reason="properties.customer.email: must be an e-mail address")
    for mode in ("changed", "new"):
        decisions = store.sync("dag.task").decide([(JANE, "fp1"), (JANE, "fp2")], mode)
        assert decisions == [Decision.SKIP_REJECTED_UNCHANGED, Decision.SEND]


def test_failed_events_are_kept_and_resent_oldest_first(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record("identify:c1", "a", "failed", payload=b'{"n":1}')
        session.record("customer_patch:c1", "b", "failed", payload=b'{"n":2}')
    with store.sync("dag.task") as session:
        session.record("customer_patch:c0", "c", "failed", payload=b'{"n":3}')
    pending = list(store.sync("dag.task").pending_failed(chunk_size=2))
    assert [(p.key, p.payload) for p in pending] == [
        ("identify:c1", b'{"n":1}'),
        ("customer_patch:c1", b'{"n":2}'),
        ("customer_patch:c0", b'{"n":3}'),
    ]


def test_a_failure_that_fails_again_keeps_its_place_and_sums_attempts(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record("k:first", "a", "failed", payload=b"1", attempts=6)
        session.record("k:second", "b", "failed", payload=b"2", attempts=6)
    with store.sync("dag.task") as session:
        for kept in reversed(list(session.pending_failed())):
            session.record(kept.key, kept.fingerprint, "failed", payload=kept.payload, attempts=6)
    pending = list(store.sync("dag.task").pending_failed())
    assert [(p.key, p.attempts) for p in pending] == [("k:first", 12), ("k:second", 12)]


def test_a_delivered_resend_leaves_the_pending_list(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "failed", payload=b"{}")
    with store.sync("dag.task") as session:
        for kept in session.pending_failed():
            session.record(kept.key, kept.fingerprint, "delivered")
    assert list(store.sync("dag.task").pending_failed()) == []
    assert store.sync("dag.task").decide([(JANE, "fp1")]) == [Decision.SKIP_UNCHANGED]


def test_the_query_row_of_an_event_being_resent_is_not_sent_twice(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "failed", payload=b"{}")
    session = store.sync("dag.task")
    assert session.decide([(JANE, "fp1")]) == [Decision.SEND]  # nobody resends it yet
    list(session.pending_failed())
    assert session.decide([(JANE, "fp1"), (JANE, "fp2")]) == [Decision.SKIP_RESENDING, Decision.SEND]


def test_failures_are_resent_by_the_partition_that_recorded_them(store: StateStore) -> None:
    with store.sync("dag.task", partition="0") as session:
        session.record("customer_patch:a", "fp", "failed", payload=b"a")
    with store.sync("dag.task", partition="1") as session:
        session.record("customer_patch:b", "fp", "failed", payload=b"b")
    assert [p.key for p in store.sync("dag.task", partition="1").pending_failed()] == ["customer_patch:b"]


def test_outcomes_are_written_every_flush_every_records(store: StateStore) -> None:
    store.flush_every = 3
    session = store.sync("dag.task")
    reader = store.sync("dag.task")
    session.record("k:1", "fp", "delivered")
    session.record("k:2", "fp", "delivered")
    assert reader.counts()["delivered"] == 0
    session.record("k:3", "fp", "delivered")
    assert reader.counts()["delivered"] == 3


def test_leaving_the_block_on_an_error_still_writes_what_was_recorded(store: StateStore) -> None:
    def broken_run() -> None:
        with store.sync("dag.task") as session:
            session.record(JANE, "fp1", "delivered")
            raise RuntimeError("the run broke")

    with pytest.raises(RuntimeError):
        broken_run()
    assert store.sync("dag.task").counts() == {"delivered": 1, "failed": 0, "rejected": 0}


def test_syncs_do_not_touch_each_other(store: StateStore) -> None:
    with store.sync("dag.one") as one:
        one.record(JANE, "fp1", "delivered")
    other = store.sync("dag.two")
    assert other.decide([(JANE, "fp1")]) == [Decision.SEND]
    assert other.reset() == 0
    assert store.sync("dag.one").counts()["delivered"] == 1
    assert store.sync_ids() == ["dag.one"]


def test_reset_forgets_one_sync(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "delivered")
        session.record("customer_patch:bob@example.com", "fp1", "failed", payload=b"{}")
    assert store.sync("dag.task").reset() == 2
    assert store.sync("dag.task").decide([(JANE, "fp1")]) == [Decision.SEND]


def test_problems_are_redacted_unless_asked(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        session.record(JANE, "fp1", "rejected", reason=["properties.total: is required for purchase events"])
        session.record("customer_patch:bob@example.com", "fp1", "delivered")
    problems = store.sync("dag.task").problems()
    assert [(p.key, p.status, p.reason) for p in problems] == [
        ("customer_patch:j***@example.com", "rejected", "properties.total: is required for purchase events")
    ]
    assert store.sync("dag.task").problems(show_pii=True)[0].key == JANE


def test_to_send_streams_candidates_with_one_lookup_per_chunk(store: StateStore) -> None:
    with store.sync("dag.task") as session:
        for i in range(0, 2000, 2):
            session.record(f"customer_patch:{i}", "fp", "delivered")
    selects: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: selects.append(a[2]) if "SELECT" in a[2] else None)
    candidates = ((f"customer_patch:{i}", "fp", i) for i in range(2000))
    sent = list(store.sync("dag.task").to_send(candidates, "changed"))
    assert sent == list(range(1, 2000, 2))
    assert len([s for s in selects if "event_key IN" in s]) == 3  # 2,000 keys in chunks of 900


def test_parallel_partitions_on_one_state_do_not_corrupt_it(store: StateStore) -> None:
    """Two writers, overlapping keys, many small transactions at once: every outcome lands, none is lost."""
    store.flush_every = 50
    errors: list[BaseException] = []

    def partition(name: str) -> None:
        try:
            writer = StateStore(store.engine, table_prefix=store.meta_table.name.removesuffix("state_meta"), flush_every=50)
            with writer.sync("dag.task", partition=name) as session:
                for i in range(3000):
                    session.record(f"customer_patch:{name}-{i}", "fp", "delivered")
                    session.record(f"customer_patch:shared-{i % 500}", "fp", "failed", payload=b"{}")
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    store.sync("dag.task")
    threads = [threading.Thread(target=partition, args=(n,)) for n in ("0", "1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.sync("dag.task").counts() == {"delivered": 6000, "failed": 500, "rejected": 0}


def test_event_keys_follow_the_event_kind() -> None:
    patch = {"event": "customer_patch", "properties": {"distinct_id": "jane@example.com", "customer": {"a": 1}}}
    purchase = {"event": "purchase", "properties": {"distinct_id": "x", "order_id": "o-1", "total": 3}}
    view = {"event": "viewed_product", "properties": {"distinct_id": "x", "products": [{"id": "p1"}]}}
    assert event_key(patch) == "customer_patch:jane@example.com"
    assert event_key(purchase) == "purchase:o-1"
    assert event_key(view, key_value=42) == "viewed_product:42"
    assert event_key(view) == f"viewed_product:#{fingerprint(view)}"


def test_a_purchase_without_order_id_gets_the_derived_one_and_long_keys_are_hashed() -> None:
    purchase = {"event": "purchase", "properties": {"distinct_id": "x", "total": 3, "products": [{"id": "p"}]}}
    assert event_key(purchase).startswith("purchase:bc-")
    long_key = event_key({"event": "customer_patch", "properties": {"distinct_id": "x" * 300}})
    assert long_key.startswith("customer_patch:~")
    assert len(long_key) <= 255


def test_fingerprints_follow_content_not_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint(b'{"a":1}') != fingerprint(b'{"a":2}')


def test_default_modes() -> None:
    assert default_mode("customer_patch") == "changed"
    assert default_mode("purchase") == "new"
    assert default_mode("viewed_product", key_column="view_id") == "new"


def test_bad_arguments_name_the_field() -> None:
    store = StateStore("sqlite://")
    with pytest.raises(BluecoreConfigError, match="sync_id"):
        store.sync("")
    with pytest.raises(BluecoreConfigError, match="mode"):
        store.sync("dag.task").decide([], "sometimes")
    with pytest.raises(BluecoreConfigError, match="status"):
        store.sync("dag.task").record(JANE, "fp", "lost")
