"""The delivery engine against a real local HTTP server: faults, order, rate, concurrency, rejects, memory, reporting."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_bluecore.delivery import DeliveryReport, Outcome, deliver, deliver_async
from airflow_provider_bluecore.events import EventDefaults
from airflow_provider_bluecore.exceptions import BluecoreConfigError, BluecoreValidationError
from airflow_provider_bluecore.retry import RetryPolicy
from tests.stub_server import StubBluecore

FAST_RETRY = RetryPolicy(max_retries=4, backoff_base=0.01, backoff_cap=0.05)


def send(server: StubBluecore, events: Any, **kwargs: Any) -> DeliveryReport:
    kwargs.setdefault("retry", FAST_RETRY)
    return deliver(
        events, url=server.url + "/api/track/mobile/v1", defaults=EventDefaults("bluestore"), user_agent="test/1", **kwargs
    )


def patch(customer: str, seq: int = 0) -> dict[str, Any]:
    return {"event": "customer_patch", "properties": {"distinct_id": customer, "customer": {"seq": seq}}}


def seqs(server: StubBluecore, customer: str) -> list[int]:
    return [b["properties"]["customer"]["seq"] for b in server.accepted if b["properties"]["distinct_id"] == customer]


def test_every_valid_event_arrives_despite_500_429_and_dropped_connections(bluecore_server: StubBluecore) -> None:
    faults: list[Any] = [500, (429, {"Retry-After": "0"}), "drop"]
    tries: Counter[str] = Counter()

    def fault(n: int, body: Any) -> Any:  # event ci fails its first i % 4 attempts, each time a different way
        key = body["properties"]["distinct_id"]
        tries[key] += 1
        return faults[(int(key[1:]) + tries[key]) % 3] if tries[key] <= int(key[1:]) % 4 else None

    bluecore_server.state.fault = fault
    report = send(bluecore_server, [patch(f"c{i}") for i in range(120)], concurrency=8)
    assert sorted(b["properties"]["distinct_id"] for b in bluecore_server.accepted) == sorted(f"c{i}" for i in range(120))
    assert (report.sent, report.failed, sum(report.retried.values())) == (120, 0, 180)
    assert {"500", "429", "connection"} == set(report.retried)


def test_a_400_is_not_retried(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.script = [400]
    outcomes: list[Outcome] = []
    report = send(bluecore_server, [patch("c1")], on_outcome=outcomes.append)
    assert len(bluecore_server.received) == 1
    assert (report.failed, outcomes[0].attempts) == (1, 1)
    assert outcomes[0].reasons[0].startswith("HTTP 400")


def test_retries_stop_after_max_retries(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.default = 503
    report = send(bluecore_server, [patch("c1")], retry=RetryPolicy(max_retries=2, backoff_base=0.01))
    assert len(bluecore_server.received) == 3
    assert report.failed == 1
    assert "gave up after 3 attempts" in report.samples[0]["reasons"][0]


def test_each_customer_receives_events_in_input_order_despite_random_delays(bluecore_server: StubBluecore) -> None:
    rng = random.Random(3)
    bluecore_server.state.fault = lambda n, body: ("delay", rng.uniform(0, 0.01), 202)
    events = [patch(f"c{i % 4}", seq=i // 4) for i in range(160)]
    send(bluecore_server, events, concurrency=8)
    for customer in ("c0", "c1", "c2", "c3"):
        assert seqs(bluecore_server, customer) == list(range(40))


def test_a_customers_later_events_are_not_sent_after_one_finally_fails(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.fault = lambda n, body: 400 if body["properties"]["distinct_id"] == "bad" else None
    outcomes: list[Outcome] = []
    events = [patch("bad", 0), patch("good", 0), patch("bad", 1), patch("good", 1), patch("bad", 2)]
    report = send(bluecore_server, events, on_outcome=outcomes.append)
    assert [r.body["properties"]["distinct_id"] for r in bluecore_server.received].count("bad") == 1
    assert seqs(bluecore_server, "good") == [0, 1]
    unsent = sorted((o.index, o.reasons[0]) for o in outcomes if o.attempts == 0)
    reason = "not sent: an earlier event for this customer failed (index 0)"
    assert unsent == [(2, reason), (4, reason)]
    assert (report.sent, report.failed) == (2, 3)


def test_rate_limit_spaces_requests_evenly_at_the_server(bluecore_server: StubBluecore) -> None:
    send(bluecore_server, [patch(f"c{i}") for i in range(30)], concurrency=8, max_events_per_second=40)
    arrivals = [r.at for r in bluecore_server.received]
    assert arrivals[-1] - arrivals[0] >= 29 / 40 * 0.9
    # No bursts: any 10 consecutive arrivals span most of 9 intervals (a burst would put them within milliseconds).
    assert min(arrivals[i + 9] - arrivals[i] for i in range(len(arrivals) - 9)) >= 9 / 40 * 0.5


def test_a_429_halves_concurrency_as_seen_by_the_server(bluecore_server: StubBluecore) -> None:
    all_in = threading.Barrier(16, timeout=10)  # the first 16 requests are held until all 16 are in flight, then get 429

    def fault(n: int, body: Any) -> Any:
        return 429 if n <= 16 and all_in.wait() >= 0 else ("delay", 0.05, 202)

    bluecore_server.state.fault = fault
    report = send(bluecore_server, [patch(f"c{i}") for i in range(64)], concurrency=16)
    after = [r for r in bluecore_server.received if r.answered == 202]
    assert bluecore_server.state.peak_in_flight == 16
    assert max(r.in_flight for r in after[:16]) <= 9  # halved to 8, plus 1 once 8 successes restore one
    assert (report.sent, report.retried["429"]) == (64, 16)


def test_successes_restore_concurrency_after_a_429(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.script = [429]
    bluecore_server.state.default = ("delay", 0.05, 202)
    report = send(bluecore_server, [patch(f"c{i}") for i in range(120)], concurrency=8)
    assert max(r.in_flight for r in bluecore_server.received[-40:]) >= 7
    assert report.peak_concurrency == 8


def test_retry_after_pauses_every_worker(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.script = [(429, {"Retry-After": "1"})]
    send(bluecore_server, [patch(f"c{i}") for i in range(40)], concurrency=1)
    first, second = bluecore_server.received[:2]
    assert first.answered == 429
    assert second.at - first.at >= 0.9


def test_invalid_events_are_rejected_with_reasons_and_never_sent(bluecore_server: StubBluecore) -> None:
    bad = {"event": "purchase", "properties": {"distinct_id": "jane@example.com", "products": [{"id": "1"}]}}
    outcomes: list[Outcome] = []
    report = send(bluecore_server, [patch("c1"), bad, patch("c2")], on_outcome=outcomes.append)
    assert sorted(b["properties"]["distinct_id"] for b in bluecore_server.accepted) == ["c1", "c2"]
    rejected = next(o for o in outcomes if o.status == "rejected")
    assert (rejected.index, rejected.payload, rejected.attempts) == (1, None, 0)
    assert "properties.total: is required for purchase events" in rejected.reasons
    assert (report.rejected, report.samples[0]["key"]) == (1, "j***@example.com")


def test_max_rejected_count_stops_reading_and_raises_with_the_report(bluecore_server: StubBluecore) -> None:
    read = []
    events = ({"event": "search", "properties": {"distinct_id": f"c{i}"}} for i in range(1000) if not read.append(i))
    with pytest.raises(BluecoreValidationError, match=r"6 of 6 events seen were rejected") as info:
        send(bluecore_server, events, max_rejected=5)
    assert len(read) == 6
    assert info.value.report.rejected == 6
    assert "properties.search_term" in str(info.value)


def test_valid_events_read_before_max_rejected_is_crossed_are_sent(bluecore_server: StubBluecore) -> None:
    invalid = {"event": "search", "properties": {"distinct_id": "x"}}
    with pytest.raises(BluecoreValidationError) as info:
        send(bluecore_server, [patch("c0"), patch("c1"), invalid, invalid, patch("c2")], max_rejected=1)
    assert sorted(b["properties"]["distinct_id"] for b in bluecore_server.accepted) == ["c0", "c1"]
    assert (info.value.report.sent, info.value.report.seen) == (2, 4)


def test_max_rejected_fraction_is_checked_once_100_events_were_seen(bluecore_server: StubBluecore) -> None:
    invalid = {"event": "search", "properties": {"distinct_id": "x"}}
    events = [invalid if i % 5 == 0 else patch(f"c{i}") for i in range(1000)]  # 20 % invalid
    with pytest.raises(BluecoreValidationError) as info:
        send(bluecore_server, events, max_rejected=0.1)
    assert info.value.report.seen == 101  # checked at each rejection: event 100 is the first one after 100 were seen


def test_max_rejected_fraction_below_the_limit_passes(bluecore_server: StubBluecore) -> None:
    invalid = {"event": "search", "properties": {"distinct_id": "x"}}
    report = send(bluecore_server, [invalid if i % 20 == 0 else patch(f"c{i}") for i in range(200)], max_rejected=0.1)
    assert (report.sent, report.rejected) == (190, 10)


def test_max_rejected_fraction_is_checked_at_the_end_of_a_short_input(bluecore_server: StubBluecore) -> None:
    invalid = {"event": "search", "properties": {"distinct_id": "x"}}
    with pytest.raises(BluecoreValidationError) as info:
        send(bluecore_server, [invalid, invalid, *[patch(f"c{i}") for i in range(8)]], max_rejected=0.1)
    assert (info.value.report.sent, len(bluecore_server.accepted)) == (8, 8)


def test_the_input_is_read_lazily_within_a_bounded_window(bluecore_server: StubBluecore) -> None:
    finished: list[int] = []
    ahead = [0]

    def events() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            ahead[0] = max(ahead[0], i - len(finished))  # events read but not yet finished
            yield patch(f"c{i}")

    report = send(bluecore_server, events(), concurrency=4, on_outcome=lambda o: finished.append(o.index))
    assert report.sent == 1000
    assert 100 < ahead[0] <= 256  # the window is max(4 * concurrency, 256)


def test_on_outcome_is_called_once_per_input_event(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.fault = lambda n, body: 400 if body["properties"]["distinct_id"] == "c3" else None
    events = [patch(f"c{i}") for i in range(10)] + [{"event": "bad name"}]
    outcomes: list[Outcome] = []
    report = send(bluecore_server, events, on_outcome=outcomes.append)
    assert sorted(o.index for o in outcomes) == list(range(11))
    assert report.seen == report.sent + report.rejected + report.failed == 11


def test_report_round_trips_through_json(bluecore_server: StubBluecore) -> None:
    bluecore_server.state.script = [500]
    report = send(bluecore_server, [patch("c1"), {"event": "search", "properties": {}}])
    data = report.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert (data["seen"], data["sent"], data["rejected"], data["retried"]) == (2, 1, 1, {"500": 1})
    assert data["peak_concurrency"] == 1
    assert "1 sent, 1 rejected, 0 failed, 1 retried (500: 1)" in report.summary_line()


def test_logs_hold_no_email_addresses(bluecore_server: StubBluecore, caplog: pytest.LogCaptureFixture) -> None:
    bluecore_server.state.script = [(400, {})]
    events = [patch("jane.doe@example.com"), {"event": "identify", "properties": {"distinct_id": "john@example.com"}}]
    events += [patch(f"user{i}@example.com") for i in range(50)]
    bluecore_server.state.default = ("delay", 0.01, 202)
    with caplog.at_level(logging.DEBUG, logger="airflow_provider_bluecore"):
        send(bluecore_server, events, concurrency=2, progress_interval=0.05)
    assert "j***@example.com" in caplog.text
    assert "progress" in caplog.text
    assert not re.search(r"[a-z0-9.]{2,}@example", caplog.text)


def test_samples_are_bounded(bluecore_server: StubBluecore) -> None:
    report = send(bluecore_server, [{"event": "search", "properties": {"distinct_id": f"c{i}"}} for i in range(50)])
    assert (report.rejected, len(report.samples)) == (50, 20)


def test_headers_and_exact_body_are_sent(bluecore_server: StubBluecore) -> None:
    outcomes: list[Outcome] = []
    send(bluecore_server, [patch("c1")], on_outcome=outcomes.append)
    request = bluecore_server.received[0]
    assert (request.path, request.headers["User-Agent"], request.headers["Content-Type"]) == (
        "/api/track/mobile/v1",
        "test/1",
        "application/json",
    )
    assert request.raw == outcomes[0].payload
    assert request.body["properties"]["token"] == "bluestore"


def test_an_error_in_the_input_is_raised_after_the_events_read_are_finished(bluecore_server: StubBluecore) -> None:
    def events() -> Iterator[dict[str, Any]]:
        yield patch("c1")
        raise ConnectionResetError("cursor lost")

    finished: list[Outcome] = []
    with pytest.raises(ConnectionResetError):
        send(bluecore_server, events(), on_outcome=finished.append)
    assert [o.status for o in finished] == ["delivered"]


def test_an_error_in_on_outcome_stops_delivery_and_propagates(bluecore_server: StubBluecore) -> None:
    def broken(outcome: Outcome) -> None:
        raise RuntimeError("state store down")

    with pytest.raises(RuntimeError, match="state store down"):
        send(bluecore_server, [patch(f"c{i}") for i in range(500)], on_outcome=broken)
    assert len(bluecore_server.received) < 500


@pytest.mark.parametrize(
    ("argument", "value"),
    [("concurrency", 0), ("max_rejected", 1.5), ("max_rejected", -1), ("max_events_per_second", 0), ("max_rejected", True)],
)
def test_arguments_out_of_range_are_config_errors(bluecore_server: StubBluecore, argument: str, value: object) -> None:
    with pytest.raises(BluecoreConfigError, match=argument):
        send(bluecore_server, [patch("c1")], **{argument: value})
    assert bluecore_server.received == []


def test_deliver_inside_a_running_loop_points_at_deliver_async(bluecore_server: StubBluecore) -> None:
    async def main() -> DeliveryReport:
        with pytest.raises(BluecoreConfigError, match="deliver_async"):
            send(bluecore_server, [patch("c1")])
        return await deliver_async(
            [patch("c2")], url=bluecore_server.url, defaults=EventDefaults("bluestore"), retry=FAST_RETRY, user_agent="t"
        )

    assert asyncio.run(main()).sent == 1
    assert [b["properties"]["distinct_id"] for b in bluecore_server.accepted] == ["c2"]


def test_deliver_works_from_a_thread_while_another_loop_runs(bluecore_server: StubBluecore) -> None:
    async def main() -> DeliveryReport:
        return await asyncio.to_thread(send, bluecore_server, [patch("c1")])

    assert asyncio.run(main()).sent == 1
