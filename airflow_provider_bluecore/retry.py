"""The retry policy, stated in one place and used by both the single-event path (hook) and the bulk delivery engine.

Retried: connection errors, timeouts, 408, 429 and every 5xx except 501 (Not Implemented) and 505 (HTTP Version Not
Supported), which will not change on a retry. Any other 4xx fails at once. Waits grow exponentially with *full jitter*
(a uniform draw between 0 and ``min(backoff_cap, backoff_base * 2**attempt)``), so many workers that failed together do not
retry together. A ``Retry-After`` header (seconds or an HTTP date) is honoured, capped at ``retry_after_cap``.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from dataclasses import dataclass

__all__ = ["NEVER_RETRIED_5XX", "RetryPolicy", "is_retryable_status", "parse_retry_after"]

NEVER_RETRIED_5XX = frozenset({501, 505})


def is_retryable_status(status: int) -> bool:
    """True for 408, 429 and 5xx other than 501/505."""
    return status in (408, 429) or (500 <= status <= 599 and status not in NEVER_RETRIED_5XX)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param backoff_base: the first backoff ceiling in seconds; doubles at each attempt.
    :param backoff_cap: the largest backoff ceiling in seconds.
    :param retry_after_cap: the longest ``Retry-After`` honoured, in seconds.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 300.0

    def should_retry(self, attempt: int, status: int | None) -> bool:
        """Whether attempt number ``attempt`` (1-based) may be followed by another; ``status`` None is a connection error."""
        if attempt > self.max_retries:
            return False
        return status is None or is_retryable_status(status)

    def delay(self, attempt: int, retry_after: str | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based), honouring ``Retry-After`` when given."""
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            return min(honoured, self.retry_after_cap)
        # The exponent is bounded so a large max_retries cannot overflow a float; the cap is reached long before.
        ceiling = min(self.backoff_cap, self.backoff_base * (2.0 ** min(max(attempt - 1, 0), 64)))
        return (rng or random).uniform(0.0, ceiling)
