"""The Events API rules (airflow_provider_bluecore.events): one test per rule, bad values included."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_bluecore.events import (
    STANDARD_EVENTS,
    EventDefaults,
    derive_order_id,
    is_behavioural,
    prepare_event,
    redact,
    validate_event,
)
from airflow_provider_bluecore.exceptions import BluecoreValidationError

NS = EventDefaults("bluestore")
EMAIL = "xyz@example.com"


def event(name: str, **props: Any) -> dict[str, Any]:
    return {"event": name, "properties": {"distinct_id": EMAIL, **props}}


def sent(evt: dict[str, Any], defaults: EventDefaults = NS) -> dict[str, Any]:
    """The JSON body that would be POSTed."""
    return json.loads(prepare_event(evt, defaults).body)


def fields(evt: Any, defaults: EventDefaults = NS) -> set[str]:
    return {p.field for p in validate_event(evt, defaults)}


PRODUCTS = [{"id": "1234"}]
VALID = {
    "viewed_product": event("viewed_product", products=PRODUCTS),
    "search": event("search", search_term="logo design"),
    "add_to_cart": event("add_to_cart", products=PRODUCTS),
    "remove_from_cart": event("remove_from_cart", products=[{"id": "1234"}, {"id": "5678"}]),
    "wishlist": event("wishlist", products=PRODUCTS),
    "purchase": event("purchase", products=PRODUCTS, total=400.20, order_id="ABCDE12345", customer={"email": EMAIL}),
    "customer_patch": event("customer_patch", customer={"first_name": "X", "last_name": "Yz"}),
    "identify": event("identify", customer={"email": EMAIL}),
    "optin": event("optin", email=EMAIL),
    "unsubscribe": event("unsubscribe", email=EMAIL),
}


def test_the_ten_standard_events_are_known() -> None:
    assert set(STANDARD_EVENTS) == set(VALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_reference_page_examples_are_valid(name: str) -> None:
    assert validate_event(VALID[name], NS) == []


def test_custom_lowercase_snake_case_event_is_valid() -> None:
    assert validate_event(event("sweepstakes_signup"), NS) == []


@pytest.mark.parametrize("name", ["SweepstakesSignup", "sweepstakes-signup", "sweepstakes signup", "1st_event", "", None])
def test_other_event_names_are_rejected(name: Any) -> None:
    assert fields({"event": name, "properties": {"distinct_id": EMAIL}}) == {"event"}


@pytest.mark.parametrize("distinct_id", [None, "", "   "])
def test_distinct_id_is_required_and_not_blank(distinct_id: Any) -> None:
    assert fields(event("sweepstakes_signup", distinct_id=distinct_id)) == {"properties.distinct_id"}


def test_integer_distinct_id_is_sent_as_a_string() -> None:
    assert sent(event("sweepstakes_signup", distinct_id=42))["properties"]["distinct_id"] == "42"


def test_token_is_filled_from_the_namespace() -> None:
    assert sent(event("sweepstakes_signup"))["properties"]["token"] == "bluestore"


def test_token_of_another_namespace_is_rejected() -> None:
    problems = validate_event(event("sweepstakes_signup", token="otherstore"), NS)
    assert [(p.field, "another account" in p.rule) for p in problems] == [("properties.token", True)]


def test_client_and_device_defaults_fill_only_missing_values() -> None:
    props = sent(event("sweepstakes_signup", device="iPad"), EventDefaults("bluestore", client="4.0", device="warehouse"))
    assert (props["properties"]["client"], props["properties"]["device"]) == ("4.0", "iPad")


@pytest.mark.parametrize("name", ["viewed_product", "add_to_cart", "remove_from_cart", "wishlist", "purchase"])
def test_commerce_events_need_products(name: str) -> None:
    evt = json.loads(json.dumps(VALID[name]))
    del evt["properties"]["products"]
    assert fields(evt) == {"properties.products"}


@pytest.mark.parametrize(
    ("products", "field"),
    [([], "properties.products"), ([{"sku": "1"}], "properties.products[0].id"), (["1234"], "properties.products[0]")],
)
def test_products_is_a_non_empty_list_of_objects_with_ids(products: Any, field: str) -> None:
    assert fields(event("viewed_product", products=products)) == {field}


def test_search_needs_a_search_term_and_no_products() -> None:
    assert fields(event("search")) == {"properties.search_term"}
    assert fields(event("search", search_term="  ")) == {"properties.search_term"}


def test_purchase_needs_total() -> None:
    evt = event("purchase", products=PRODUCTS, order_id="A1", customer={"email": EMAIL})
    assert fields(evt) == {"properties.total"}


def test_purchase_total_of_zero_is_valid() -> None:
    assert sent(VALID["purchase"] | {"properties": {**VALID["purchase"]["properties"], "total": 0}})["properties"]["total"] == 0


@pytest.mark.parametrize("total", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), "400.20", True])
def test_purchase_total_must_be_a_finite_number(total: Any) -> None:
    evt = event("purchase", products=PRODUCTS, order_id="A1", total=total, customer={"email": EMAIL})
    assert fields(evt) == {"properties.total"}


def purchase_without_order_id(**changes: Any) -> dict[str, Any]:
    return event("purchase", **{"products": PRODUCTS, "total": 12.5, "customer": {"email": EMAIL}, **changes})


def test_missing_order_id_is_derived_deterministically() -> None:
    first = sent(purchase_without_order_id())["properties"]["order_id"]
    assert first == sent(purchase_without_order_id())["properties"]["order_id"]
    assert first.startswith("bc-")


def test_derived_order_id_differs_for_different_content() -> None:
    ids = {
        sent(purchase_without_order_id())["properties"]["order_id"],
        sent(purchase_without_order_id(total=13))["properties"]["order_id"],
        sent(purchase_without_order_id(products=[{"id": "9"}]))["properties"]["order_id"],
        sent(purchase_without_order_id(distinct_id="other"))["properties"]["order_id"],
    }
    assert len(ids) == 4


def test_derive_order_id_is_the_documented_hash() -> None:
    import hashlib

    material = {"distinct_id": "d", "email": EMAIL, "total": 1, "products": [{"id": "1"}]}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    expected = "bc-" + hashlib.sha256(canonical).hexdigest()[:24]
    assert derive_order_id({"distinct_id": "d", "customer": {"email": EMAIL}, "total": 1, "products": [{"id": "1"}]}) == expected


@pytest.mark.parametrize("name", ["purchase", "identify"])
def test_email_events_need_a_customer_email(name: str) -> None:
    evt = json.loads(json.dumps(VALID[name]))
    evt["properties"]["customer"] = {"first_name": "X"}
    assert fields(evt) == {"properties.customer.email"}


def test_customer_email_must_look_like_an_email() -> None:
    assert fields(event("identify", customer={"email": "not-an-email"})) == {"properties.customer.email"}


@pytest.mark.parametrize("name", ["optin", "unsubscribe"])
def test_consent_email_in_properties_sends_both_forms(name: str) -> None:
    props = sent(event(name, email=EMAIL))["properties"]
    assert (props["email"], props["customer"]) == (EMAIL, {"email": EMAIL})


@pytest.mark.parametrize("name", ["optin", "unsubscribe"])
def test_consent_email_in_customer_sends_both_forms(name: str) -> None:
    props = sent(event(name, customer={"email": EMAIL}))["properties"]
    assert (props["email"], props["customer"]) == (EMAIL, {"email": EMAIL})


def test_consent_without_any_email_names_both_places() -> None:
    assert fields(event("optin")) == {"properties.customer.email or properties.email"}


def test_consent_with_two_different_emails_is_rejected() -> None:
    assert fields(event("optin", email=EMAIL, customer={"email": "other@example.com"})) == {"properties.email"}


def test_consent_with_a_malformed_properties_email_names_that_field() -> None:
    assert fields(event("unsubscribe", email="nobody")) == {"properties.email"}


@pytest.mark.parametrize("name", ["First_Name", "first name", "first-name", "prénom"])
def test_customer_attribute_names_are_lowercase_letters_digits_underscores(name: str) -> None:
    assert fields(event("customer_patch", customer={name: "X"})) == {f"properties.customer.{name}"}


@pytest.mark.parametrize("value", ["true", "False", " TRUE "])
def test_customer_booleans_must_be_real_booleans(value: str) -> None:
    assert fields(event("customer_patch", customer={"vip": value})) == {"properties.customer.vip"}


def test_real_boolean_attribute_is_sent_as_json_boolean() -> None:
    assert sent(event("customer_patch", customer={"vip": True}))["properties"]["customer"] == {"vip": True}


def test_values_are_converted_to_json() -> None:
    customer = {
        "ltv": Decimal("12.50"),
        "orders": Decimal("3"),
        "born": dt.date(1990, 5, 17),
        "seen": dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone.utc),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    assert sent(event("customer_patch", customer=customer))["properties"]["customer"] == {
        "ltv": 12.5,
        "orders": 3,
        "born": "1990-05-17",
        "seen": "2024-03-01T12:30:00+00:00",
        "ref": "12345678-1234-5678-1234-567812345678",
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("Infinity"), b"raw", bytearray(b"x"), {1, 2}, object()])
def test_non_json_values_are_rejected(value: Any) -> None:
    assert fields(event("customer_patch", customer={"score": value})) == {"properties.customer.score"}


def test_non_json_value_nested_in_a_product_names_its_path() -> None:
    assert fields(event("viewed_product", products=[{"id": "1", "price": float("nan")}])) == {"properties.products[0].price"}


def test_oversize_event_is_rejected_with_the_limit() -> None:
    with pytest.raises(BluecoreValidationError, match="the limit is 200") as err:
        prepare_event(event("customer_patch", customer={"bio": "x" * 300}), EventDefaults("bluestore", max_event_bytes=200))
    assert [p.field for p in err.value.problems] == ["event"]


def test_default_size_limit_is_32_kib() -> None:
    assert fields(event("customer_patch", customer={"bio": "x" * 33_000})) == {"event"}
    assert fields(event("customer_patch", customer={"bio": "x" * 32_000})) == set()


def test_event_within_the_limit_is_accepted() -> None:
    assert prepare_event(event("customer_patch", customer={"bio": "x" * 100}), EventDefaults("bluestore", max_event_bytes=300))


def test_every_problem_of_an_event_is_returned_at_once() -> None:
    evt = {"event": "purchase", "extra": 1, "properties": {"distinct_id": " ", "token": "other", "total": float("nan")}}
    assert fields(evt) >= {
        "extra",
        "properties.distinct_id",
        "properties.token",
        "properties.total",
        "properties.products",
        "properties.customer.email",
    }


def test_validation_error_message_names_fields_but_not_emails() -> None:
    with pytest.raises(BluecoreValidationError) as err:
        prepare_event(event("identify", customer={"email": "jane@", "First": 1}), NS)
    assert "properties.customer.email" in str(err.value)
    assert "properties.customer.First" in str(err.value)
    assert "jane@" not in str(err.value)


def test_body_is_compact_utf8_json() -> None:
    body = prepare_event(event("customer_patch", customer={"city": "Zürich"}), NS).body
    assert "Zürich".encode() in body
    assert b": " not in body


def test_non_object_event_is_rejected() -> None:
    assert fields(["viewed_product"]) == {"event"}


def test_redact_hides_most_of_a_key() -> None:
    assert (redact("jane@example.com"), redact("cust-12345"), redact("abc")) == ("j***@example.com", "cu***45", "***")


def test_profile_and_consent_events_are_not_behavioural() -> None:
    assert [is_behavioural(n) for n in ("identify", "optin", "unsubscribe", "customer_patch", "purchase")] == [
        False,
        False,
        False,
        False,
        True,
    ]


def test_redact_emails_masks_every_address_in_a_text() -> None:
    from airflow_provider_bluecore.events import redact_emails

    text = 'invalid customer "jane@example.com", see bob.smith@corp.example.org'
    assert redact_emails(text) == 'invalid customer "j***@example.com", see b***@corp.example.org'
