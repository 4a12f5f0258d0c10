"""Rows to events: how a query's columns become Bluecore events, predictably, by reading the query.

A plain module (no Airflow import) used by :class:`~airflow_provider_bluecore.transfers.sql_to_bluecore.SqlToBluecoreOperator`
and reusable by the CLI. A :class:`RowMapper` is compiled once from the query's column names (``cursor.description``), so every
configuration mistake is found before anything is sent, and each row is then mapped with a few tuple lookups.

Column names are lowercased first (warehouses such as Snowflake answer in upper case). Then, in order of precedence:

1. ``mapping``: an explicit ``{column: target}`` dict. Targets are paths under ``properties``: ``distinct_id``, ``email``,
   ``search_term``, ``order_id``, ``total``, ``client``, ``device``, ``product_id`` (same as ``products[].id``: one product per
   row), ``products[].<field>`` (a field of that row's product, e.g. ``products[].price``), ``product_ids`` (several products),
   ``customer.<attribute>``, or any other lowercase name for a custom property. ``None`` reads the column but sends nothing.
   A leading ``properties.`` is accepted.
2. Conventions: ``distinct_id``, ``email``, ``client`` and ``device`` for every event; ``search_term`` for ``search``;
   ``product_id`` (one product) or ``product_ids`` (a list/array, or a comma-separated string) for commerce events;
   ``order_id`` and ``total`` for ``purchase``. Custom events accept all of these.
3. For events that carry a customer (``customer_patch``, ``identify``, ``purchase``, ``optin``, ``unsubscribe``) every other
   column is a customer attribute, sent under ``customer`` with its column name. For other events an unexpected column is a
   :class:`~airflow_provider_bluecore.exceptions.BluecoreConfigError`: map it, drop it from the query, or map it to ``None``.

``email`` goes to ``customer.email`` for events that carry a customer (``events.prepare_event`` also copies it to
``properties.email`` for ``optin``/``unsubscribe``); for other events it is used only by ``auto_identify`` and never sent.

Other rules:

* NULLs are left out of the event (never the string ``"None"``). With ``send_nulls=True`` NULL customer attributes and custom
  properties are sent as JSON ``null`` (to clear them); identifiers and commerce fields are always left out when NULL, so the
  validation reason reads "is required".
* Attribute names must be lowercase letters, digits and underscores: a column that would become an invalid attribute stops the
  mapping before anything is sent, with the alias to write (``SELECT "First Name" AS first_name``).
* ``customer_attributes``: an optional allowlist; any other attribute is a configuration error (Bluecore creates attributes
  permanently the first time it sees them).
* Purchases: consecutive rows with the same ``order_id`` are one purchase carrying every row's products. A field that differs
  between those rows (a different ``total``, customer or attribute) rejects that order, naming the field; so does an order whose
  rows are not consecutive (the query is not ordered by ``order_id``). Rows with a NULL ``order_id`` are purchases of their own.
* ``auto_identify`` (default on): an event whose ``distinct_id`` is not an e-mail but which comes with an e-mail is preceded by
  an ``identify`` linking the two, the first time the id is seen in the run. The ids already identified are kept in a bounded
  memory (the most recent ``identify_memory`` ids, 1,000,000 by default; measured at about 80 MB of bookkeeping plus the ids
  themselves, ~150 MB in all for 1,000,000 ids of 17 characters, reached only by a run with that many distinct non-e-mail
  ids): an id seen again after that many other ids gets a second ``identify``, which is harmless (it links the same pair
  again). Purchase grouping remembers as many finished order ids, to spot orders whose rows are not consecutive.
* ``row_to_event``: a callable receiving the row as a dict (lowercase keys, NULLs as None) and returning an event dict, a list
  of them, or None to skip the row. Conventions, ``mapping`` and ``send_nulls`` do not apply; ``auto_identify`` and
  ``customer_attributes`` do (an event with an attribute outside the allowlist is rejected).

The mapper only shapes events; :func:`~airflow_provider_bluecore.events.prepare_event` (run by the delivery engine, or by a dry
run) applies the Events API rules.

The output is a stream of :class:`MappedEvent`: the event, where it came from (row number, ``key_column`` value) and, when the
mapping itself had to reject it (purchase rows that disagree, a bad ``row_to_event`` result), the problems. This is the stream a
sync-state layer filters before sending.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_bluecore.events import PRODUCT_EVENTS, STANDARD_EVENTS, is_email, redact, validate_event_name
from airflow_provider_bluecore.exceptions import BluecoreConfigError, Problem

__all__ = [
    "CUSTOMER_EVENTS",
    "DEFAULT_IDENTIFY_MEMORY",
    "MappedEvent",
    "RowMapper",
    "redact_event",
    "split_product_ids",
]

#: Events that carry a ``customer`` object: every column not otherwise mapped becomes one of its attributes.
CUSTOMER_EVENTS = frozenset({"customer_patch", "identify", "purchase", "optin", "unsubscribe"})
#: How many ``distinct_id`` values ``auto_identify`` remembers (and how many order ids purchase grouping remembers).
DEFAULT_IDENTIFY_MEMORY = 1_000_000

_ATTRIBUTE = re.compile(r"[a-z0-9_]+")
_PROPERTY = re.compile(r"[a-z_][a-z0-9_]*")
_PROP_FIELDS = frozenset({"distinct_id", "client", "device", "search_term", "order_id", "total"})
_COMMERCE_CONVENTIONS = frozenset({"product_id", "product_ids"})
_RESERVED_TARGETS = frozenset({"token", "event", "customer", "products"})
_KEPT_IN_SAMPLES = frozenset({"event", "client", "device"})

# A target is (kind, name). Kinds: "prop" (a convention field under properties), "extra" (a custom property), "email",
# "customer" (an attribute), "product" (a field of the row's product; "id" is the product id), "product_ids", "ignore".
_Target = tuple[str, str]


class MappedEvent:
    """One event produced from the source, on its way to being sent.

    :param event: the event dict (``{"event": ..., "properties": {...}}``) as it will be handed to the delivery engine.
    :param row: the 1-based number of the source row it came from (the first row, for a grouped purchase).
    :param rows: how many source rows it stands for (more than 1 for a grouped purchase).
    :param key: the value of the mapper's ``key_column`` in that row, or None without one.
    :param problems: why the mapping rejected it (never sent); empty for an event to send.
    :param generated: True for an ``identify`` added by ``auto_identify`` in front of the row's own event.
    :param email: the row's e-mail when the event itself carries none (used only by ``auto_identify``; never sent).
    """

    __slots__ = ("email", "event", "generated", "key", "problems", "row", "rows")

    def __init__(
        self,
        event: Any,
        row: int,
        rows: int = 1,
        key: Any = None,
        problems: list[Problem] | None = None,
        generated: bool = False,
        email: Any = None,
    ) -> None:
        self.event = event
        self.row = row
        self.rows = rows
        self.key = key
        self.problems: list[Problem] = problems if problems is not None else []
        self.generated = generated
        self.email = email

    @property
    def rejected(self) -> bool:
        """True when the mapping rejected this event: it must not be sent."""
        return bool(self.problems)

    @property
    def name(self) -> str | None:
        """The event name, when the event has a string one."""
        name = self.event.get("event") if isinstance(self.event, Mapping) else None
        return name if isinstance(name, str) else None

    @property
    def distinct_id(self) -> Any:
        """The raw ``properties.distinct_id``, or None."""
        props = self.event.get("properties") if isinstance(self.event, Mapping) else None
        return props.get("distinct_id") if isinstance(props, Mapping) else None

    def __repr__(self) -> str:  # no payload: the event holds PII
        state = f"rejected={len(self.problems)}" if self.problems else "ok"
        return f"MappedEvent(name={self.name!r}, row={self.row}, rows={self.rows}, {state}, generated={self.generated})"


class _Recent:
    """A set bounded to the ``limit`` most recently added keys (an LRU without values)."""

    __slots__ = ("_keys", "limit")

    def __init__(self, limit: int) -> None:
        self._keys: OrderedDict[Any, None] = OrderedDict()
        self.limit = limit

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Any) -> bool:
        """Remember ``key``; True when it was not remembered yet."""
        keys = self._keys
        if key in keys:
            keys.move_to_end(key)
            return False
        keys[key] = None
        if len(keys) > self.limit:
            keys.popitem(last=False)
        return True


def split_product_ids(value: Any) -> list[dict[str, Any]]:
    """Products from a ``product_ids`` value: a list/tuple/array of ids, or a comma-separated string (blanks dropped)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"id": part.strip()} for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [{"id": item.strip() if isinstance(item, str) else item} for item in value if item is not None]
    return [{"id": value}]


def redact_event(event: Any) -> Any:
    """A copy of ``event`` safe to log: every string is redacted (``j***@example.com``, ``cu***45``) except the event name,
    ``client``, ``device`` and product ids; numbers, booleans and the structure are kept."""
    return _redact_value(event, "")


def _redact_value(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_product(v) if key == "products" else _redact_value(v, key) for v in value]
    if isinstance(value, str) and key not in _KEPT_IN_SAMPLES:
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return value if key in _KEPT_IN_SAMPLES else redact(value)


def _redact_product(product: Any) -> Any:
    if not isinstance(product, Mapping):
        return _redact_value(product, "")
    return {k: (v if k == "id" else _redact_value(v, str(k))) for k, v in product.items()}


def _alias_hint(column: str) -> str:
    alias = re.sub(r"[^a-z0-9_]+", "_", column.lower()).strip("_") or "attribute_name"
    return f'alias it in the query, e.g. SELECT "{column}" AS {alias}'


def _conventions(event: str) -> frozenset[str]:
    """The convention column names of an event."""
    names = {"distinct_id", "client", "device", "email"}
    if event == "search":
        names.add("search_term")
    elif event == "purchase":
        names |= {"order_id", "total"} | _COMMERCE_CONVENTIONS
    elif event in PRODUCT_EVENTS:
        names |= _COMMERCE_CONVENTIONS
    elif event not in STANDARD_EVENTS:
        names |= {"search_term", "order_id", "total"} | _COMMERCE_CONVENTIONS
    return frozenset(names)


def _convention_target(column: str) -> _Target:
    if column == "email":
        return ("email", "email")
    if column == "product_id":
        return ("product", "id")
    if column == "product_ids":
        return ("product_ids", "")
    return ("prop", column)


def _parse_target(column: str, target: Any) -> _Target:
    """The target of an explicit ``mapping`` entry, or a BluecoreConfigError naming the column and the rule."""
    if target is None:
        return ("ignore", "")
    if not isinstance(target, str) or not target.strip():
        raise BluecoreConfigError(f"mapping[{column!r}]: the target must be a field path such as 'customer.first_name' or None")
    path = target.strip()
    path = path[len("properties.") :] if path.startswith("properties.") else path
    if path in _PROP_FIELDS:
        return ("prop", path)
    if path in ("email", "customer.email"):
        return ("email", "email")
    if path in ("product_id", "products[].id"):
        return ("product", "id")
    if path == "product_ids":
        return ("product_ids", "")
    if path.startswith("customer."):
        attribute = path[len("customer.") :]
        if not _ATTRIBUTE.fullmatch(attribute):
            raise BluecoreConfigError(
                f"mapping[{column!r}]: {target!r} is not a valid customer attribute: attribute names are lowercase letters, "
                "digits and underscores (no space, no dash)"
            )
        return ("customer", attribute)
    if path.startswith("products[]."):
        product_field = path[len("products[].") :]
        if not _PROPERTY.fullmatch(product_field):
            raise BluecoreConfigError(f"mapping[{column!r}]: {target!r} must name a product field, e.g. 'products[].price'")
        return ("product", product_field)
    if path in _RESERVED_TARGETS:
        hint = {
            "token": "the namespace comes from the Bluecore connection",
            "event": "the event name is the operator's `event`; use row_to_event for a per-row event name",
            "customer": "map to 'customer.<attribute>'",
            "products": "map to 'product_id', 'products[].<field>' or 'product_ids'",
        }[path]
        raise BluecoreConfigError(f"mapping[{column!r}]: {target!r} cannot be a target: {hint}")
    if _PROPERTY.fullmatch(path):
        return ("extra", path)
    raise BluecoreConfigError(
        f"mapping[{column!r}]: {target!r} is not a known target: use distinct_id, email, search_term, order_id, total, "
        "client, device, product_id, product_ids, products[].<field>, customer.<attribute>, a lowercase custom property, "
        "or None to leave the column out"
    )


class RowMapper:
    """Turns rows of one query into events, compiled once from the query's column names.

    :param columns: the column names, in row order (``[d[0] for d in cursor.description]``); lowercased here.
    :param event: the event name: a standard event or a lowercase custom event name (default ``customer_patch``).
    :param mapping: ``{column: target}`` overriding the conventions (see the module documentation); None maps by convention.
    :param row_to_event: a callable ``row dict -> event | list of events | None`` taking full control of the mapping; excludes
        ``mapping``.
    :param send_nulls: send NULL customer attributes and custom properties as JSON ``null`` instead of leaving them out.
    :param auto_identify: precede an event whose non-e-mail ``distinct_id`` comes with an e-mail by an ``identify`` linking
        them, once per id per run.
    :param customer_attributes: the customer attributes allowed to be sent; any other attribute column is a configuration
        error. None allows every attribute.
    :param key_column: a column identifying the source row (e.g. an event id). Its value is carried as
        :attr:`MappedEvent.key`; the column is not sent unless a convention or ``mapping`` maps it.
    :param identify_memory: how many ids ``auto_identify`` (and order ids purchase grouping) remember.
    :raises BluecoreConfigError: the columns, ``event`` or ``mapping`` cannot work, naming the column and what to do.
    """

    def __init__(
        self,
        columns: Sequence[str],
        *,
        event: str = "customer_patch",
        mapping: Mapping[str, str | None] | None = None,
        row_to_event: Callable[[dict[str, Any]], Any] | None = None,
        send_nulls: bool = False,
        auto_identify: bool = True,
        customer_attributes: Collection[str] | None = None,
        key_column: str | None = None,
        identify_memory: int = DEFAULT_IDENTIFY_MEMORY,
    ) -> None:
        problems = validate_event_name(event)
        if problems:
            raise BluecoreConfigError(f"event: {problems[0].rule}")
        if mapping is not None and row_to_event is not None:
            raise BluecoreConfigError("mapping and row_to_event: give one or the other (row_to_event takes full control)")
        if row_to_event is not None and not callable(row_to_event):
            raise BluecoreConfigError("row_to_event: must be a callable taking a row dict")
        if isinstance(customer_attributes, str):
            raise BluecoreConfigError("customer_attributes: must be a list of attribute names, not a string")
        if identify_memory < 1:
            raise BluecoreConfigError("identify_memory: must be >= 1")
        self.event = event
        self.send_nulls = send_nulls
        self.auto_identify = auto_identify
        self.row_to_event = row_to_event
        self.allowed = frozenset(a.lower() for a in customer_attributes) if customer_attributes is not None else None
        self.identify_memory = identify_memory
        self.original_columns = tuple(str(c) for c in columns)
        self.columns = tuple(c.lower() for c in self.original_columns)
        self._check_duplicates()
        self.key_index: int | None = None
        if key_column is not None:
            if key_column.lower() not in self.columns:
                raise BluecoreConfigError(f"key_column: {key_column!r} is not a column of the query ({self._listed()})")
            self.key_index = self.columns.index(key_column.lower())
        self.carries_customer = event in CUSTOMER_EVENTS
        self.targets: dict[str, _Target] = {}
        if row_to_event is None:
            self.targets = self._compile_targets(mapping or {}, key_column.lower() if key_column else None)
        self._build_plan()
        #: Counters of the last :meth:`map` call.
        self.rows_read = 0
        self.events_built = 0
        self.identifies_added = 0
        self.rejected = 0
        self.rows_skipped = 0

    # ---- compiling ---------------------------------------------------------------------------------------------------------

    def _listed(self) -> str:
        return ", ".join(self.columns) if self.columns else "no columns"

    def _check_duplicates(self) -> None:
        seen: dict[str, str] = {}
        for original, column in zip(self.original_columns, self.columns, strict=True):
            if column in seen:
                raise BluecoreConfigError(
                    f"columns {seen[column]!r} and {original!r} have the same name once lowercased; alias one of them"
                )
            seen[column] = original

    def _compile_targets(self, mapping: Mapping[str, str | None], key_column: str | None) -> dict[str, _Target]:
        explicit = {str(k).lower(): v for k, v in mapping.items()}
        unknown = sorted(set(explicit) - set(self.columns))
        if unknown:
            raise BluecoreConfigError(
                f"mapping: {', '.join(map(repr, unknown))} not among the query's columns ({self._listed()})"
            )
        conventions = _conventions(self.event)
        targets: dict[str, _Target] = {}
        leftover: list[str] = []
        for original, column in zip(self.original_columns, self.columns, strict=True):
            if column in explicit:
                targets[column] = _parse_target(original, explicit[column])
            elif column in conventions:
                targets[column] = _convention_target(column)
            elif column == key_column:
                targets[column] = ("ignore", "")
            elif self.carries_customer:
                if not _ATTRIBUTE.fullmatch(column):
                    raise BluecoreConfigError(
                        f"column {original!r}: would become a customer attribute, and attribute names are lowercase "
                        f"letters, digits and underscores (no space, no dash); {_alias_hint(original)}"
                    )
                targets[column] = ("customer", column)
            else:
                leftover.append(original)
        if leftover:
            listed = ", ".join(map(repr, leftover))
            raise BluecoreConfigError(
                f"column(s) {listed}: not used by {self.event} events (they carry no customer attributes). Drop them from "
                f"the query, map them with mapping={{column: 'field.path'}}, or map them to None to leave them out"
            )
        self._check_targets(targets)
        return targets

    def _check_targets(self, targets: dict[str, _Target]) -> None:
        by_target: dict[_Target, str] = {}
        for column, target in targets.items():
            if target[0] == "ignore":
                continue
            if target in by_target:
                name = f"customer.{target[1]}" if target[0] == "customer" else (target[1] or target[0])
                raise BluecoreConfigError(f"columns {by_target[target]!r} and {column!r} both map to {name}; keep one")
            by_target[target] = column
        kinds = {t[0] for t in by_target}
        has_id = ("product", "id") in by_target
        if has_id and "product_ids" in kinds:
            raise BluecoreConfigError("product_id and product_ids: use one or the other (one product per row, or a list)")
        if "product" in kinds and not has_id:
            raise BluecoreConfigError("products[].<field> needs a product id column too (product_id or products[].id)")
        if "email" in kinds and not self.carries_customer and not self.auto_identify:
            column = next(c for c, t in targets.items() if t[0] == "email")
            raise BluecoreConfigError(
                f"column {column!r}: {self.event} events carry no customer, so an e-mail is only used by auto_identify, "
                "which is off. Drop the column, turn auto_identify on, or map it to None"
            )
        attributes = [t[1] for t in by_target if t[0] == "customer"]
        if self.allowed is not None:
            outside = [a for a in attributes if a not in self.allowed]
            if outside:
                raise BluecoreConfigError(
                    f"customer attribute(s) {', '.join(map(repr, outside))}: not in customer_attributes "
                    f"({', '.join(sorted(self.allowed)) or 'empty'}). Attributes are created permanently in Bluecore: add "
                    "them to the allowlist, or drop the columns (map them to None)"
                )

    def _build_plan(self) -> None:
        plan: dict[str, list[tuple[int, str]]] = {"prop": [], "extra": [], "customer": [], "product": []}
        self.email_index: int | None = None
        self.product_ids_index: int | None = None
        for index, column in enumerate(self.columns):
            kind, name = self.targets.get(column, ("ignore", ""))
            if kind in plan:
                plan[kind].append((index, name))
            elif kind == "email":
                self.email_index = index
            elif kind == "product_ids":
                self.product_ids_index = index
        # The product id comes first so a row's product reads {"id": ..., "price": ...}.
        plan["product"].sort(key=lambda item: item[1] != "id")
        self._props = tuple(plan["prop"])
        self._extras = tuple(plan["extra"])
        self._customer = tuple(plan["customer"])
        self._product = tuple(plan["product"])
        self._product_id_index = self._product[0][0] if self._product else None
        self.group_purchases = (
            self.event == "purchase" and self.row_to_event is None and ("prop", "order_id") in set(self.targets.values())
        )

    @property
    def attributes(self) -> tuple[str, ...]:
        """The customer attribute names this mapping sends (empty with ``row_to_event``: the callable decides)."""
        return tuple(name for _, name in self._customer)

    def describe(self) -> str:
        """The mapping in one line, for the log: ``col -> field`` pairs (names only, never values)."""
        if self.row_to_event is not None:
            return f"row_to_event={getattr(self.row_to_event, '__name__', 'callable')}"
        parts = []
        for column in self.columns:
            kind, name = self.targets[column]
            shown = {
                "prop": name,
                "extra": name,
                "email": "customer.email" if self.carries_customer else "email (auto_identify only)",
                "customer": f"customer.{name}",
                "product": f"products[].{name}",
                "product_ids": "products (ids)",
                "ignore": "(not sent)",
            }[kind]
            parts.append(f"{column} -> {shown}")
        return f"{self.event}: " + ", ".join(parts)

    # ---- mapping -----------------------------------------------------------------------------------------------------------

    def map(self, rows: Iterable[Sequence[Any]]) -> Iterator[MappedEvent]:
        """Map ``rows`` (tuples in column order) lazily to events. Counters are reset at the start."""
        self.rows_read = self.events_built = self.identifies_added = self.rejected = self.rows_skipped = 0
        identified = _Recent(self.identify_memory) if self.auto_identify else None
        if self.row_to_event is not None:
            source = self._map_callable(rows)
        elif self.group_purchases:
            source = self._map_grouped(rows)
        else:
            source = self._map_rows(rows)
        for mapped in source:
            if mapped.problems:
                self.rejected += 1
            else:
                if identified is not None:
                    identify = self._identify(mapped, identified)
                    if identify is not None:
                        self.identifies_added += 1
                        self.events_built += 1
                        yield identify
                self.events_built += 1
            yield mapped

    def _parts(self, row: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """The properties and customer of one row (products not included) and its e-mail."""
        props: dict[str, Any] = {}
        for index, name in self._props:
            value = row[index]
            if value is not None:
                props[name] = value
        nulls = self.send_nulls
        for index, name in self._extras:
            value = row[index]
            if value is not None or nulls:
                props[name] = value
        customer: dict[str, Any] = {}
        for index, name in self._customer:
            value = row[index]
            if value is not None or nulls:
                customer[name] = value
        email = row[self.email_index] if self.email_index is not None else None
        return props, customer, email

    def _products(self, row: Sequence[Any]) -> list[dict[str, Any]]:
        if self._product_id_index is not None:
            if row[self._product_id_index] is None:
                return []
            return [{name: row[index] for index, name in self._product if row[index] is not None}]
        if self.product_ids_index is not None:
            return split_product_ids(row[self.product_ids_index])
        return []

    def _event(self, props: dict[str, Any], customer: dict[str, Any], email: Any, products: list[dict[str, Any]]) -> dict:
        if self.carries_customer:
            if email is not None:
                customer["email"] = email
            if customer:
                props["customer"] = customer
        elif customer:  # explicit customer.<attribute> mapping on an event without a customer of its own
            props["customer"] = customer
        if products:
            props["products"] = products
        return {"event": self.event, "properties": props}

    def _map_rows(self, rows: Iterable[Sequence[Any]]) -> Iterator[MappedEvent]:
        key_index = self.key_index
        has_products = self._product_id_index is not None or self.product_ids_index is not None
        for number, row in enumerate(rows, 1):
            props, customer, email = self._parts(row)
            products = self._products(row) if has_products else []
            mapped = MappedEvent(self._event(props, customer, email, products), number)
            if key_index is not None:
                mapped.key = row[key_index]
            if not self.carries_customer:
                mapped.email = email
            self.rows_read = number
            yield mapped

    def _map_grouped(self, rows: Iterable[Sequence[Any]]) -> Iterator[MappedEvent]:
        """Purchases: consecutive rows with the same order_id become one event with all their products."""
        order_index = next(i for i, name in self._props if name == "order_id")
        key_index = self.key_index
        done_orders = _Recent(self.identify_memory)
        group: _Order | None = None
        number = 0
        for row in rows:
            number += 1
            self.rows_read = number
            order_id = row[order_index]
            if group is not None and order_id is not None and order_id == group.order_id:
                group.add(self, row, number)
                continue
            if group is not None:
                yield group.finish(self, done_orders)
            group = _Order(self, row, number, row[key_index] if key_index is not None else None)
        if group is not None:
            yield group.finish(self, done_orders)

    def _map_callable(self, rows: Iterable[Sequence[Any]]) -> Iterator[MappedEvent]:
        function = self.row_to_event
        assert function is not None
        columns = self.columns
        key_index = self.key_index
        number = 0
        for row in rows:
            number += 1
            key = row[key_index] if key_index is not None else None
            try:
                result = function(dict(zip(columns, row, strict=True)))
            except Exception as exc:
                raise BluecoreConfigError(
                    f"row_to_event raised {type(exc).__name__} on row {number}; fix the callable (see the chained error)"
                ) from exc
            self.rows_read = number
            if result is None:
                self.rows_skipped += 1
                continue
            events = [result] if isinstance(result, Mapping) else result
            if not isinstance(events, list | tuple):
                problem = Problem(
                    "row_to_event", f"returned a {type(result).__name__}; return an event dict, a list of them, or None"
                )
                yield MappedEvent(None, number, key=key, problems=[problem])
                continue
            for event in events:
                yield MappedEvent(event, number, key=key, problems=self._outside_allowlist(event))

    def _outside_allowlist(self, event: Any) -> list[Problem]:
        if self.allowed is None:
            return []
        props = event.get("properties") if isinstance(event, Mapping) else None
        customer = props.get("customer") if isinstance(props, Mapping) else None
        if not isinstance(customer, Mapping):
            return []
        return [
            Problem(f"properties.customer.{name}", "is not in customer_attributes (attributes are created permanently)")
            for name in customer
            if name != "email" and name not in self.allowed
        ]

    def _identify(self, mapped: MappedEvent, identified: _Recent) -> MappedEvent | None:
        """The identify to send before ``mapped``, the first time its non-e-mail distinct_id comes with an e-mail."""
        event = mapped.event
        if not isinstance(event, Mapping):
            return None
        props = event.get("properties")
        if not isinstance(props, Mapping):
            return None
        distinct_id = props.get("distinct_id")
        if type(distinct_id) is not str and type(distinct_id) is not int:
            return None
        if is_email(distinct_id):
            return None
        email = mapped.email
        if email is None:
            customer = props.get("customer")
            email = customer.get("email") if isinstance(customer, Mapping) else None
            if email is None:
                email = props.get("email")
            if not is_email(email):
                return None  # the event carries this e-mail itself and is rejected for it: one reason, not two
        if not identified.add(distinct_id) or event.get("event") == "identify":
            return None
        identify = {"event": "identify", "properties": {"distinct_id": distinct_id, "customer": {"email": email}}}
        return MappedEvent(identify, mapped.row, mapped.rows, mapped.key, generated=True)


class _Order:
    """The rows of one purchase being grouped."""

    __slots__ = ("customer", "email", "first", "key", "last", "order_id", "problems", "products", "props")

    def __init__(self, mapper: RowMapper, row: Sequence[Any], number: int, key: Any) -> None:
        self.props, self.customer, self.email = mapper._parts(row)
        self.order_id = self.props.get("order_id")
        self.products = mapper._products(row)
        self.first = self.last = number
        self.key = key
        self.problems: list[Problem] = []

    def add(self, mapper: RowMapper, row: Sequence[Any], number: int) -> None:
        props, customer, email = mapper._parts(row)
        if props != self.props:
            self._differs("properties", self.props, props)
        if customer != self.customer:
            self._differs("properties.customer", self.customer, customer)
        if email != self.email:
            self._note(Problem("email", "differs between the rows of this order"))
        self.products.extend(mapper._products(row))
        self.last = number

    def _differs(self, where: str, first: dict[str, Any], other: dict[str, Any]) -> None:
        for name in sorted(set(first) | set(other)):
            if first.get(name) != other.get(name):
                self._note(Problem(f"{where}.{name}", "differs between the rows of this order; every row of an order must agree"))

    def _note(self, problem: Problem) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def finish(self, mapper: RowMapper, done_orders: _Recent) -> MappedEvent:
        rows = self.last - self.first + 1
        if self.order_id is not None and type(self.order_id) in (str, int) and not done_orders.add(self.order_id):
            self._note(
                Problem(
                    "properties.order_id",
                    "this order's rows are not consecutive (it appeared earlier in the query): add ORDER BY order_id",
                )
            )
        if self.problems:
            where = f"rows {self.first}-{self.last}" if rows > 1 else f"row {self.first}"
            problems = [Problem(p.field, f"{p.rule} ({where})") for p in self.problems]
            return MappedEvent({"event": "purchase", "properties": self.props}, self.first, rows, self.key, problems)
        event = mapper._event(self.props, self.customer, self.email, self.products)
        return MappedEvent(event, self.first, rows, self.key)
