"""The provider's event rules applied to one event as it arrives, for the sandbox and for ``bluecore validate``.

Both use :func:`airflow_provider_bluecore.events.prepare_event`, so they accept exactly what the provider would send. The only
question answered here is which namespace an event is checked against:

* with a ``namespace``, the event's ``token`` must equal it (a missing token is filled in, as the connection would);
* without one, the event's own ``token`` is taken as the namespace, so any non-empty token passes.

The sandbox additionally sets ``require_token``: on the wire the real API needs ``properties.token``, and the provider always
sends it, so an event arriving without one is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_bluecore.events import DEFAULT_MAX_EVENT_BYTES, EventDefaults, PreparedEvent, prepare_event
from airflow_provider_bluecore.exceptions import BluecoreValidationError, Problem

__all__ = ["check_event"]

# A placeholder namespace used only when the event has no usable token of its own and none is enforced; the event is then
# either filled in by the connection later (validate) or already refused (sandbox), so the value never reaches a result.
_UNSET = "\x00unset-namespace"


def _own_token(event: Any) -> object:
    properties = event.get("properties") if isinstance(event, Mapping) else None
    return properties.get("token") if isinstance(properties, Mapping) else None


def check_event(
    event: Any,
    *,
    namespace: str | None = None,
    require_token: bool = False,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> tuple[PreparedEvent | None, list[Problem]]:
    """Check one parsed event against the provider's rules.

    :param event: the event as parsed from JSON.
    :param namespace: the namespace every event must belong to, or None to accept each event's own non-empty token.
    :param require_token: refuse events without ``properties.token`` (what arrives on the wire must carry one).
    :param max_event_bytes: the largest serialised event accepted.
    :return: the prepared event and no problems, or None and every problem found.
    """
    token = _own_token(event)
    problems: list[Problem] = []
    if token is None and require_token:
        problems.append(Problem("properties.token", "is required (the namespace)"))
    elif token is not None and (not isinstance(token, str) or not token.strip()):
        problems.append(Problem("properties.token", "must be a non-empty string (the namespace)"))
    if namespace is None:
        namespace = token if isinstance(token, str) and token.strip() else _UNSET
    try:
        prepared = prepare_event(event, EventDefaults(namespace=namespace, max_event_bytes=max_event_bytes))
    except BluecoreValidationError as exc:
        problems.extend(p for p in exc.problems if p not in problems and not _is_token_noise(p, problems))
        return None, problems
    if problems:
        return None, problems
    return prepared, []


def _is_token_noise(problem: Problem, already: list[Problem]) -> bool:
    """A token mismatch against the placeholder repeats a token problem already reported."""
    return problem.field == "properties.token" and any(p.field == "properties.token" for p in already)
