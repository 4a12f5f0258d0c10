"""RowMapper: rows to events by conventions, explicit mapping or a callable; grouping, identify, NULLs, allowlist."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_bluecore.events import EventDefaults, prepare_event
from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.mapping import RowMapper, redact_event, split_product_ids

DEFAULTS = EventDefaults(namespace="bluestore")


def events(mapper: RowMapper, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [m.event for m in mapper.map(rows)]


def test_conventions_make_a_valid_customer_patch_with_attributes() -> None:
    mapper = RowMapper(["distinct_id", "email", "first_name", "points"], auto_identify=False)
    [event] = events(mapper, [("jo@example.com", "jo@example.com", "Jo", 12)])
    assert event == {
        "event": "customer_patch",
        "properties": {
            "distinct_id": "jo@example.com",
            "customer": {"first_name": "Jo", "points": 12, "email": "jo@example.com"},
        },
    }
    prepare_event(event, DEFAULTS)  # what the mapper builds passes the Events API rules


def test_upper_case_column_names_are_lowercased() -> None:
    mapper = RowMapper(["DISTINCT_ID", "FIRST_NAME"])
    [event] = events(mapper, [("c@example.com", "Jo")])
    assert event["properties"] == {"distinct_id": "c@example.com", "customer": {"first_name": "Jo"}}


def test_invalid_attribute_column_names_the_column_and_the_alias() -> None:
    with pytest.raises(BluecoreConfigError, match=r"column 'First Name'.*SELECT \"First Name\" AS first_name"):
        RowMapper(["distinct_id", "First Name"])


def test_dash_in_attribute_column_is_refused() -> None:
    with pytest.raises(BluecoreConfigError, match=r"'loyalty-tier'.*AS loyalty_tier"):
        RowMapper(["distinct_id", "loyalty-tier"])


def test_columns_equal_once_lowercased_are_refused() -> None:
    with pytest.raises(BluecoreConfigError, match="same name once lowercased"):
        RowMapper(["distinct_id", "Tier", "TIER"])


def test_unexpected_column_of_a_behavioural_event_is_a_config_error() -> None:
    with pytest.raises(BluecoreConfigError, match=r"'colour'.*not used by viewed_product"):
        RowMapper(["distinct_id", "product_id", "colour"], event="viewed_product")


def test_search_maps_search_term() -> None:
    [event] = events(RowMapper(["distinct_id", "search_term"], event="search"), [("a@b.co", "red shoes")])
    assert event["properties"] == {"distinct_id": "a@b.co", "search_term": "red shoes"}


def test_explicit_mapping_overrides_conventions_and_can_drop_columns() -> None:
    mapping = {"cust_id": "distinct_id", "FName": "customer.first_name", "internal": None, "mail": "email"}
    mapper = RowMapper(["CUST_ID", "fname", "internal", "mail"], mapping=mapping, auto_identify=False)
    [event] = events(mapper, [(7, "Jo", "secret", "jo@example.com")])
    assert event["properties"] == {"distinct_id": 7, "customer": {"first_name": "Jo", "email": "jo@example.com"}}


def test_mapping_of_a_missing_column_is_refused() -> None:
    with pytest.raises(BluecoreConfigError, match=r"'nope' not among the query's columns"):
        RowMapper(["distinct_id"], mapping={"nope": "customer.x"})


@pytest.mark.parametrize(
    ("target", "message"),
    [("customer.First Name", "not a valid customer attribute"), ("token", "namespace comes from"), ("a.b", "not a known")],
)
def test_mapping_to_a_bad_target_is_refused(target: str, message: str) -> None:
    with pytest.raises(BluecoreConfigError, match=message):
        RowMapper(["distinct_id", "x"], mapping={"x": target})


def test_two_columns_to_one_field_are_refused() -> None:
    with pytest.raises(BluecoreConfigError, match="both map to distinct_id"):
        RowMapper(["distinct_id", "cust_id"], mapping={"cust_id": "distinct_id"})


def test_product_fields_from_mapping() -> None:
    mapper = RowMapper(["distinct_id", "product_id", "price"], event="add_to_cart", mapping={"price": "products[].price"})
    [event] = events(mapper, [("a@b.co", "sku-1", Decimal("9.50"))])
    assert event["properties"]["products"] == [{"id": "sku-1", "price": Decimal("9.50")}]


@pytest.mark.parametrize("value", [["p1", "p2"], ("p1", "p2"), "p1, p2,", "p1,p2"])
def test_product_ids_from_list_or_comma_separated_string(value: Any) -> None:
    [event] = events(RowMapper(["distinct_id", "product_ids"], event="wishlist"), [("a@b.co", value)])
    assert event["properties"]["products"] == [{"id": "p1"}, {"id": "p2"}]


def test_split_product_ids_of_null_is_empty() -> None:
    assert split_product_ids(None) == []


def test_nulls_are_left_out_by_default() -> None:
    [event] = events(RowMapper(["distinct_id", "first_name", "city"]), [("a@b.co", None, "Oslo")])
    assert event["properties"]["customer"] == {"city": "Oslo"}
    assert b"None" not in prepare_event(event, DEFAULTS).body


def test_send_nulls_sends_json_null_for_attributes_only() -> None:
    mapper = RowMapper(["distinct_id", "first_name", "client"], send_nulls=True)
    [event] = events(mapper, [("a@b.co", None, None)])
    assert event["properties"] == {"distinct_id": "a@b.co", "customer": {"first_name": None}}
    assert b'"first_name":null' in prepare_event(event, DEFAULTS).body


PURCHASE_COLUMNS = ["order_id", "distinct_id", "email", "total", "product_id"]


def test_consecutive_rows_of_an_order_make_one_purchase() -> None:
    rows = [("o1", "a@b.co", "a@b.co", 30, "p1"), ("o1", "a@b.co", "a@b.co", 30, "p2"), ("o2", "c@d.co", "c@d.co", 5, "p3")]
    mapped = list(RowMapper(PURCHASE_COLUMNS, event="purchase").map(rows))
    assert [(m.event["properties"]["order_id"], m.row, m.rows) for m in mapped] == [("o1", 1, 2), ("o2", 3, 1)]
    assert mapped[0].event["properties"]["products"] == [{"id": "p1"}, {"id": "p2"}]
    prepare_event(mapped[0].event, DEFAULTS)


def test_a_total_differing_between_rows_rejects_only_that_order() -> None:
    rows = [("o1", "a@b.co", "a@b.co", 30, "p1"), ("o1", "a@b.co", "a@b.co", 31, "p2"), ("o2", "c@d.co", "c@d.co", 5, "p3")]
    first, second = RowMapper(PURCHASE_COLUMNS, event="purchase").map(rows)
    assert [str(p) for p in first.problems] == [
        "properties.total: differs between the rows of this order; every row of an order must agree (rows 1-2)"
    ]
    assert not second.problems


def test_an_order_whose_rows_are_not_consecutive_is_rejected() -> None:
    rows = [("o1", "a@b.co", "a@b.co", 3, "p1"), ("o2", "a@b.co", "a@b.co", 4, "p2"), ("o1", "a@b.co", "a@b.co", 3, "p3")]
    mapped = list(RowMapper(PURCHASE_COLUMNS, event="purchase").map(rows))
    assert [bool(m.problems) for m in mapped] == [False, False, True]
    assert "ORDER BY order_id" in str(mapped[2].problems[0])


def test_identify_precedes_the_first_event_of_a_non_email_id_once() -> None:
    mapper = RowMapper(["distinct_id", "email", "tier"])
    rows = [("c-1", "jo@example.com", "gold"), ("c-1", "jo@example.com", "silver"), ("al@example.com", "al@example.com", "x")]
    names = [(e["event"], e["properties"]["distinct_id"]) for e in events(mapper, rows)]
    assert names == [
        ("identify", "c-1"),
        ("customer_patch", "c-1"),
        ("customer_patch", "c-1"),
        ("customer_patch", "al@example.com"),
    ]
    assert mapper.identifies_added == 1


def test_identify_links_the_id_to_the_email() -> None:
    identify, _ = events(RowMapper(["distinct_id", "email"]), [("c-1", "jo@example.com")])
    assert identify == {"event": "identify", "properties": {"distinct_id": "c-1", "customer": {"email": "jo@example.com"}}}


def test_auto_identify_off_sends_no_identify() -> None:
    out = events(RowMapper(["distinct_id", "email"], auto_identify=False), [("c-1", "jo@example.com")])
    assert [e["event"] for e in out] == ["customer_patch"]


def test_email_of_a_behavioural_event_is_used_only_for_identify() -> None:
    out = events(RowMapper(["distinct_id", "email", "product_id"], event="viewed_product"), [("dev-9", "jo@example.com", "p1")])
    assert [e["event"] for e in out] == ["identify", "viewed_product"]
    assert "jo@example.com" not in str(out[1])


def test_email_of_a_behavioural_event_without_auto_identify_is_refused() -> None:
    with pytest.raises(BluecoreConfigError, match="only used by auto_identify"):
        RowMapper(["distinct_id", "email", "product_id"], event="viewed_product", auto_identify=False)


def test_identify_memory_is_bounded_and_forgets_the_oldest_id() -> None:
    mapper = RowMapper(["distinct_id", "email"], identify_memory=2)
    rows = [("c-1", "a@b.co"), ("c-2", "b@b.co"), ("c-3", "c@b.co"), ("c-1", "a@b.co")]
    identified = [e["properties"]["distinct_id"] for e in events(mapper, rows) if e["event"] == "identify"]
    assert identified == ["c-1", "c-2", "c-3", "c-1"]


def test_attribute_outside_the_allowlist_is_a_config_error() -> None:
    with pytest.raises(BluecoreConfigError, match=r"'nickname'.*not in customer_attributes"):
        RowMapper(["distinct_id", "first_name", "nickname"], customer_attributes=["first_name"])


def test_allowlisted_attributes_are_mapped() -> None:
    mapper = RowMapper(["distinct_id", "email", "First_Name"], customer_attributes=["FIRST_NAME"])
    assert mapper.attributes == ("first_name",)


def test_row_to_event_gets_a_lowercase_row_dict_and_may_return_a_list_or_none() -> None:
    def to_events(row: dict[str, Any]) -> Any:
        if row["kind"] == "skip":
            return None
        return [{"event": "search", "properties": {"distinct_id": row["id"], "search_term": row["kind"]}}] * 2

    mapper = RowMapper(["ID", "KIND"], row_to_event=to_events)
    out = events(mapper, [("a@b.co", "shoes"), ("a@b.co", "skip")])
    assert [e["properties"]["search_term"] for e in out] == ["shoes", "shoes"]
    assert (mapper.rows_read, mapper.rows_skipped) == (2, 1)


def test_row_to_event_returning_something_else_is_rejected_with_a_reason() -> None:
    [mapped] = RowMapper(["id"], row_to_event=lambda row: "oops").map([(1,)])
    assert "returned a str" in str(mapped.problems[0])


def test_row_to_event_attribute_outside_the_allowlist_rejects_that_event() -> None:
    def patch(row: dict[str, Any]) -> dict[str, Any]:
        return {"event": "customer_patch", "properties": {"distinct_id": row["id"], "customer": {"vip": True}}}

    [mapped] = RowMapper(["id"], row_to_event=patch, customer_attributes=["tier"]).map([("a@b.co",)])
    assert [p.field for p in mapped.problems] == ["properties.customer.vip"]


def test_mapping_and_row_to_event_together_are_refused() -> None:
    with pytest.raises(BluecoreConfigError, match="one or the other"):
        RowMapper(["id"], mapping={"id": "distinct_id"}, row_to_event=lambda row: None)


def test_key_column_is_carried_but_not_sent() -> None:
    mapper = RowMapper(["event_id", "distinct_id", "product_id"], event="add_to_cart", key_column="EVENT_ID")
    [mapped] = mapper.map([("ev-1", "a@b.co", "p1")])
    assert mapped.key == "ev-1"
    assert "ev-1" not in str(mapped.event)


def test_redacted_event_hides_emails_ids_and_attribute_values() -> None:
    event = {
        "event": "purchase",
        "properties": {
            "distinct_id": "cust-12345",
            "customer": {"email": "jo@example.com", "name": "Jo"},
            "products": [{"id": "sku-1"}],
            "total": 9.5,
            "order_id": "ord-98765",
        },
    }
    shown = str(redact_event(event))
    for secret in ("cust-12345", "jo@example.com", "'Jo'", "ord-98765"):
        assert secret not in shown
    assert all(kept in shown for kept in ("j***@example.com", "sku-1", "9.5"))
