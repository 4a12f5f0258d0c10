"""The retry policy: which answers are retried, how long to wait, Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterator

import pytest

from airflow_provider_bluecore.retry import RetryPolicy, is_retryable_status, parse_retry_after


class Ceiling(random.Random):
    """Draws the top of the jitter range, so a test can read the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 202, 301, 400, 401, 403, 404, 409, 413, 422, 501, 505])
def test_other_statuses_are_not_retried(status: int) -> None:
    assert not is_retryable_status(status)


def test_connection_errors_are_retried() -> None:
    assert RetryPolicy(max_retries=1).should_retry(1, None)


def test_retries_stop_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=3)
    assert [policy.should_retry(attempt, 503) for attempt in (1, 2, 3, 4)] == [True, True, True, False]


def test_max_retries_zero_never_retries() -> None:
    assert not RetryPolicy(max_retries=0).should_retry(1, None)


def test_a_non_retryable_status_is_not_retried_even_with_retries_left() -> None:
    assert not RetryPolicy(max_retries=5).should_retry(1, 400)


def test_backoff_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=3.0)
    assert [policy.delay(attempt, rng=Ceiling()) for attempt in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_full_jitter_between_zero_and_the_ceiling() -> None:
    rng = random.Random(7)
    waits = [RetryPolicy(backoff_base=1.0).delay(3, rng=rng) for _ in range(200)]
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert min(waits) < 1.0 < 3.0 < max(waits)  # spread over the range, not a fixed step


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert RetryPolicy(max_retries=10_000).delay(5_000, rng=Ceiling()) == 30.0


def test_retry_after_seconds_are_honoured() -> None:
    assert RetryPolicy(backoff_base=10).delay(1, "2") == 2.0


def test_retry_after_is_capped() -> None:
    assert RetryPolicy(retry_after_cap=300).delay(1, "86400") == 300.0


def test_retry_after_http_date_is_honoured() -> None:
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == 30.0


@pytest.fixture
def tokyo_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time 9 hours off GMT, so a date read as local time would be wrong."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo_time")
def test_retry_after_http_date_without_zone_is_read_as_gmt() -> None:
    date = email.utils.formatdate(1_000_030).rsplit(" ", 1)[0] + " -0000"
    assert parse_retry_after(date, now=1_000_000) == 30.0


@pytest.mark.parametrize("value", ["-5", email.utils.formatdate(0, usegmt=True)])
def test_retry_after_in_the_past_means_now(value: str) -> None:
    assert parse_retry_after(value, now=1_000_000) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf"])
def test_unreadable_retry_after_falls_back_to_backoff(value: str | None) -> None:
    assert parse_retry_after(value) is None
    assert RetryPolicy(backoff_base=0.5).delay(1, value, rng=Ceiling()) == 0.5
