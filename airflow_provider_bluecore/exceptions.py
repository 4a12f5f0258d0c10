"""Exceptions raised by the Bluecore provider.

One hierarchy, so callers can catch as broadly or as narrowly as they need::

    BluecoreError                      base of everything this package raises
    ├── BluecoreConfigError            the connection or operator arguments are wrong; retrying cannot help
    ├── BluecoreValidationError        one or more events break the Events API rules (every problem, not just the first)
    ├── BluecoreApiError               Bluecore answered with a status that is not retried, or retries ran out
    └── BluecoreDeliveryError          a bulk delivery finished with failed events (carries the DeliveryReport)

Messages name the field, the rule and the HTTP status. They never contain payloads, e-mail addresses or secrets: keys that
identify a customer are redacted (``j***@example.com``) before they reach a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BluecoreApiError",
    "BluecoreConfigError",
    "BluecoreDeliveryError",
    "BluecoreError",
    "BluecoreValidationError",
    "Problem",
]


class Problem:
    """One broken rule: the field it concerns (a dotted path such as ``properties.customer.email``) and the rule."""

    __slots__ = ("field", "rule")

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"

    def __repr__(self) -> str:
        return f"Problem({self.field!r}, {self.rule!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.field, self.rule) == (other.field, other.rule)

    def __hash__(self) -> int:
        return hash((self.field, self.rule))


class BluecoreError(Exception):
    """Base class of every exception raised by this provider."""


class BluecoreConfigError(BluecoreError, ValueError):
    """The connection or the arguments are misconfigured. Fix the configuration; a retry will fail the same way."""


class BluecoreValidationError(BluecoreError, ValueError):
    """Events break the Events API rules.

    :param problems: every problem found, each naming a field and a rule.
    :param report: the delivery report so far, when raised by a bulk delivery that crossed ``max_rejected``.
    """

    def __init__(self, message: str, problems: Sequence[Problem] = (), report: Any = None) -> None:
        self.problems: list[Problem] = list(problems)
        self.report = report
        if self.problems:
            message = f"{message}: " + "; ".join(str(p) for p in self.problems)
        super().__init__(message)


class BluecoreApiError(BluecoreError):
    """Bluecore answered with a status that is not retried (most 4xx), or retries ran out.

    :param status: the HTTP status, or None when no answer came (connection error, timeout).
    :param body_excerpt: at most 200 characters of the answer's body.
    :param attempts: how many requests were made.
    """

    def __init__(self, message: str, status: int | None = None, body_excerpt: str = "", attempts: int = 1) -> None:
        self.status = status
        self.body_excerpt = body_excerpt[:200]
        self.attempts = attempts
        super().__init__(message)


class BluecoreDeliveryError(BluecoreError):
    """A bulk delivery finished with events that could not be delivered. ``report`` holds the full DeliveryReport."""

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)
