"""The Events API rules: which events exist, what each requires, and how an event becomes the exact JSON that is POSTed.

A plain module (no Airflow import) shared by the hook, the delivery engine, the CLI and the local sandbox, so that every path
applies the same rules. The rules follow Bluecore's Events API reference page:

* every event needs ``properties.distinct_id`` (non-empty, not blank) and ``properties.token`` (the namespace; filled in from the
  connection when missing, rejected when it names another namespace);
* commerce events (``viewed_product``, ``add_to_cart``, ``remove_from_cart``, ``wishlist``, ``purchase``) need ``products``: a
  non-empty list of objects, each with a non-empty ``id``; ``search`` needs ``search_term`` instead;
* ``purchase`` needs ``order_id`` (derived deterministically when missing, see :func:`derive_order_id`) and ``total`` (a finite
  number; 0 is valid);
* ``purchase``, ``identify``, ``optin`` and ``unsubscribe`` need a customer e-mail. For ``optin``/``unsubscribe`` the reference
  page's table asks for ``customer.email`` while its examples use ``properties.email``: either is accepted and both are sent;
* customer attribute names are lowercase ``[a-z0-9_]`` (no space, no dash); booleans must be real booleans (``"true"`` is
  rejected); values must be JSON: ``Decimal`` becomes a number, ``date``/``datetime`` ISO 8601, ``UUID`` a string, while NaN,
  Infinity, bytes and unknown objects are rejected;
* an event larger than ``max_event_bytes`` (default 32 KiB) once serialised is rejected.

:func:`prepare_event` returns every problem of an event at once, each naming the field and the rule.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow_provider_bluecore.exceptions import BluecoreValidationError, Problem

__all__ = [
    "BEHAVIOURAL_EXEMPT_EVENTS",
    "COMMERCE_EVENTS",
    "DEFAULT_MAX_EVENT_BYTES",
    "EMAIL_EVENTS",
    "PRODUCT_EVENTS",
    "STANDARD_EVENTS",
    "EventDefaults",
    "PreparedEvent",
    "derive_order_id",
    "is_behavioural",
    "is_email",
    "normalize_event",
    "prepare_event",
    "redact",
    "redact_emails",
    "validate_event",
    "validate_event_name",
]

#: The ten standard events of the Events API reference page.
STANDARD_EVENTS: tuple[str, ...] = (
    "viewed_product",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "wishlist",
    "purchase",
    "customer_patch",
    "identify",
    "optin",
    "unsubscribe",
)
COMMERCE_EVENTS = frozenset({"viewed_product", "search", "add_to_cart", "remove_from_cart", "wishlist", "purchase"})
#: Commerce events that must carry ``products`` (all but ``search``).
PRODUCT_EVENTS = COMMERCE_EVENTS - {"search"}
#: Events that must carry a customer e-mail.
EMAIL_EVENTS = frozenset({"purchase", "identify", "optin", "unsubscribe"})
#: Events that describe the customer rather than a behaviour "happening now"; safe to replay and backfill.
BEHAVIOURAL_EXEMPT_EVENTS = frozenset({"customer_patch", "identify", "optin", "unsubscribe"})
_CONSENT_EVENTS = frozenset({"optin", "unsubscribe"})

DEFAULT_MAX_EVENT_BYTES = 32 * 1024

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9_]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_BOOLEAN_STRINGS = frozenset({"true", "false"})
_EMAIL_IN_TEXT = re.compile(r"[^\s\"'<>@,;:]+@[^\s\"'<>@,;:]+")
_TOP_LEVEL_KEYS = frozenset({"event", "properties"})


@dataclass(frozen=True)
class EventDefaults:
    """What the connection contributes to every event.

    :param namespace: the Bluecore namespace, sent as ``properties.token``.
    :param client: filled into events that have no ``client``.
    :param device: filled into events that have no ``device``.
    :param max_event_bytes: the largest serialised event accepted.
    """

    namespace: str
    client: str | None = None
    device: str | None = None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES


@dataclass(frozen=True)
class PreparedEvent:
    """An event that passed every rule: its name, its customer key and the exact bytes to POST."""

    name: str
    distinct_id: str
    body: bytes


def is_behavioural(name: str) -> bool:
    """True for events that record a behaviour taken as happening now (everything but profile and consent events)."""
    return name not in BEHAVIOURAL_EXEMPT_EVENTS


def is_email(value: object) -> bool:
    """True when ``value`` is a string shaped like an e-mail address."""
    return isinstance(value, str) and _EMAIL.fullmatch(value) is not None


def redact(value: object) -> str:
    """A key safe to log: ``jane@example.com`` -> ``j***@example.com``, ``cust-12345`` -> ``cu***45``."""
    text = str(value)
    local, at, domain = text.partition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    if len(text) <= 4:
        return "***"
    return f"{text[:2]}***{text[-2:]}"


def redact_emails(text: str) -> str:
    """``text`` (say, an excerpt of a server's answer) with every e-mail address in it redacted."""
    return _EMAIL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def validate_event_name(name: object) -> list[Problem]:
    """Problems with an event name: standard names, or custom lowercase snake_case names of at most 64 characters."""
    if not isinstance(name, str) or not name:
        return [Problem("event", "is required and must be a non-empty string")]
    if name in STANDARD_EVENTS or _EVENT_NAME.fullmatch(name):
        return []
    return [Problem("event", f"{name!r} is not a standard event nor a lowercase snake_case custom event name")]


def derive_order_id(properties: Mapping[str, Any]) -> str:
    """A deterministic ``order_id`` for a purchase that has none.

    The API would generate a random one, so a retried purchase would count twice. Instead the id is ``"bc-"`` followed by
    the first 24 hex digits of the SHA-256 of the canonical JSON (sorted keys, no spaces) of the purchase's ``distinct_id``,
    customer e-mail, ``total`` and ``products``. The same purchase always gets the same id; two genuinely separate but identical
    purchases would share one, so send your own ``order_id`` whenever the source has it.
    """
    customer = properties.get("customer")
    email = customer.get("email") if isinstance(customer, Mapping) else None
    material = {
        "distinct_id": properties.get("distinct_id"),
        "email": email,
        "total": properties.get("total"),
        "products": properties.get("products"),
    }
    digest = hashlib.sha256(_dumps(material, sort_keys=True)).hexdigest()
    return f"bc-{digest[:24]}"


def _dumps(value: Any, sort_keys: bool = False) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort_keys).encode()


def _json_value(value: Any, path: str, problems: list[Problem]) -> Any:
    """``value`` as plain JSON, or a Problem recorded for ``path``. Fast path first: str, int, bool, None."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        problems.append(Problem(path, "must be a finite number (NaN and Infinity are not JSON)"))
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            problems.append(Problem(path, "must be a finite number (NaN and Infinity are not JSON)"))
            return None
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        problems.append(Problem(path, "bytes are not JSON; decode them to text first"))
        return None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                problems.append(Problem(path, f"has a non-string key of type {type(k).__name__}"))
                continue
            out[k] = _json_value(v, f"{path}.{k}", problems)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, int):  # int subclasses such as numpy-free IntEnum
        return int(value)
    if isinstance(value, float):
        return _json_value(float(value), path, problems)
    problems.append(Problem(path, f"a {type(value).__name__} is not JSON-serialisable"))
    return None


def _text_id(value: Any, path: str, problems: list[Problem]) -> str | None:
    """A required identifier: a non-blank string, or an integer (turned into its decimal string)."""
    if isinstance(value, str):
        if value.strip():
            return value
        problems.append(Problem(path, "must not be empty or blank"))
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None:
        problems.append(Problem(path, "is required"))
    else:
        problems.append(Problem(path, f"must be a string, not {type(value).__name__}"))
    return None


def _check_customer(customer: Any, problems: list[Problem]) -> dict[str, Any] | None:
    if not isinstance(customer, Mapping):
        problems.append(Problem("properties.customer", "must be an object of customer attributes"))
        return None
    out: dict[str, Any] = {}
    for name, value in customer.items():
        path = f"properties.customer.{name}"
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
            problems.append(
                Problem(
                    path,
                    "attribute names must be lowercase letters, digits and underscores (no space, no dash)",
                )
            )
            continue
        if isinstance(value, str) and value.strip().lower() in _BOOLEAN_STRINGS:
            problems.append(Problem(path, "booleans must be real booleans (true/false), not the string " + repr(value)))
            continue
        if isinstance(value, Mapping):
            problems.append(Problem(path, "must be a string, number, boolean or a list of them, not an object"))
            continue
        out[name] = _json_value(value, path, problems)
    return out


def _check_products(products: Any, problems: list[Problem]) -> list[Any] | None:
    if not isinstance(products, list | tuple) or not products:
        problems.append(Problem("properties.products", "must be a non-empty list of product objects"))
        return None
    out = []
    for i, product in enumerate(products):
        path = f"properties.products[{i}]"
        if not isinstance(product, Mapping):
            problems.append(Problem(path, "must be an object with an 'id'"))
            continue
        clean = _json_value(product, path, problems)
        product_id = _text_id(product.get("id"), f"{path}.id", problems)
        if product_id is not None:
            clean["id"] = product_id
        out.append(clean)
    return out


def normalize_event(event: Any, defaults: EventDefaults) -> tuple[dict[str, Any], list[Problem]]:
    """The event as it will be sent (token, client, device filled in; values made JSON) and every problem found."""
    problems: list[Problem] = []
    if not isinstance(event, Mapping):
        return {}, [Problem("event", f"must be an object with 'event' and 'properties', not {type(event).__name__}")]
    for key in event:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(Problem(str(key), "unknown top-level field; event data goes under 'properties'"))
    name = event.get("event")
    problems.extend(validate_event_name(name))
    raw = event.get("properties")
    if not isinstance(raw, Mapping):
        problems.append(Problem("properties", "is required and must be an object"))
        return {"event": name, "properties": {}}, problems

    props: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            problems.append(Problem("properties", f"has a non-string key of type {type(key).__name__}"))
        elif key == "customer":
            customer = _check_customer(value, problems)
            if customer is not None:
                props["customer"] = customer
        elif key == "products":
            products = _check_products(value, problems)
            if products is not None:
                props["products"] = products
        else:
            props[key] = _json_value(value, f"properties.{key}", problems)

    distinct_id = _text_id(raw.get("distinct_id"), "properties.distinct_id", problems)
    if distinct_id is not None:
        props["distinct_id"] = distinct_id

    token = raw.get("token")
    if token is None:
        props["token"] = defaults.namespace
    elif token != defaults.namespace:
        problems.append(
            Problem("properties.token", "does not match the connection's namespace; it would land in another account")
        )
    for field, default in (("client", defaults.client), ("device", defaults.device)):
        if raw.get(field) is None:
            if default is not None:
                props[field] = default
            else:
                props.pop(field, None)
        elif not isinstance(raw.get(field), str):
            problems.append(Problem(f"properties.{field}", "must be a string"))

    if isinstance(name, str):
        _check_event_specific(name, raw, props, problems)

    return {"event": name, "properties": props}, problems


def _check_event_specific(name: str, raw: Mapping[str, Any], props: dict[str, Any], problems: list[Problem]) -> None:
    if name in PRODUCT_EVENTS and "products" not in raw:
        problems.append(Problem("properties.products", f"is required for {name} events"))
    if name == "search":
        term = raw.get("search_term")
        if not isinstance(term, str) or not term.strip():
            problems.append(Problem("properties.search_term", "is required for search events (a non-empty string)"))
    if name == "purchase":
        total = raw.get("total")
        if total is None:
            problems.append(Problem("properties.total", "is required for purchase events"))
        elif isinstance(total, bool) or not isinstance(total, int | float | Decimal):
            problems.append(Problem("properties.total", f"must be a number, not {type(total).__name__}"))
        if "order_id" in raw and raw["order_id"] is not None:
            order_id = _text_id(raw["order_id"], "properties.order_id", problems)
            if order_id is not None:
                props["order_id"] = order_id
        elif not any(p.field.startswith("properties.total") or p.field.startswith("properties.products") for p in problems):
            props["order_id"] = derive_order_id(props)
    if name in EMAIL_EVENTS:
        customer = props.get("customer")
        customer_email = customer.get("email") if isinstance(customer, dict) else None
        top_email = props.get("email") if name in _CONSENT_EVENTS else None
        email = customer_email if customer_email is not None else top_email
        if email is None:
            where = "properties.customer.email" + (" or properties.email" if name in _CONSENT_EVENTS else "")
            problems.append(Problem(where, f"a customer e-mail is required for {name} events"))
        elif not is_email(email):
            field = "properties.customer.email" if customer_email is not None else "properties.email"
            problems.append(Problem(field, "must be an e-mail address"))
        elif name in _CONSENT_EVENTS:
            # The reference page disagrees with itself (table: customer object; examples: properties.email): send both.
            props["email"] = email
            props["customer"] = {**(customer or {}), "email": email}
        if customer_email is not None and top_email is not None and customer_email != top_email:
            problems.append(Problem("properties.email", "differs from properties.customer.email"))
    elif "customer" in props and "email" in props["customer"] and not is_email(props["customer"]["email"]):
        problems.append(Problem("properties.customer.email", "must be an e-mail address"))


def prepare_event(event: Any, defaults: EventDefaults) -> PreparedEvent:
    """Validate and serialise one event. Raises :class:`BluecoreValidationError` listing every problem found."""
    clean, problems = normalize_event(event, defaults)
    if not problems:
        body = _dumps(clean)
        if len(body) > defaults.max_event_bytes:
            problems.append(Problem("event", f"is {len(body)} bytes once serialised; the limit is {defaults.max_event_bytes}"))
        else:
            props = clean["properties"]
            return PreparedEvent(clean["event"], props["distinct_id"], body)
    name = clean.get("event") if isinstance(clean.get("event"), str) else "event"
    raise BluecoreValidationError(f"invalid {name}", problems)


def validate_event(event: Any, defaults: EventDefaults) -> list[Problem]:
    """Every problem of ``event`` (an empty list when it is valid)."""
    try:
        prepare_event(event, defaults)
    except BluecoreValidationError as exc:
        return exc.problems
    return []
