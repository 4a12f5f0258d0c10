"""The sandbox as a client sees it: a real server on 127.0.0.1, real HTTP requests, a real SQLite file."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_bluecore.delivery import deliver
from airflow_provider_bluecore.events import EventDefaults
from airflow_provider_bluecore.retry import RetryPolicy
from airflow_provider_bluecore.sandbox import SandboxServer

DAY = 86400.0


def event(name: str, distinct_id: str, token: str | None = "bluestore", **props: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"distinct_id": distinct_id, **props}
    if token is not None:
        properties["token"] = token
    return {"event": name, "properties": properties}


def view(distinct_id: str, product: str = "1234") -> dict[str, Any]:
    return event("viewed_product", distinct_id, products=[{"id": product}])


def purchase(email: str, order_id: str, distinct_id: str | None = None) -> dict[str, Any]:
    props = {"products": [{"id": "1"}], "total": 10.0, "order_id": order_id, "customer": {"email": email}}
    return event("purchase", distinct_id or email, **props)


def identify(device: str, email: str) -> dict[str, Any]:
    return event("identify", device, customer={"email": email})


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


def post(server: SandboxServer, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.endpoint_url, data=data, headers={"Content-Type": "application/json"}, timeout=10)


def get(server: SandboxServer, path: str) -> Any:
    response = requests.get(server.url + path, timeout=10)
    response.raise_for_status()
    return response.json()


def test_valid_event_is_answered_202_and_stored(sandbox: SandboxServer) -> None:
    response = post(sandbox, view("jane@example.com"))
    assert (response.status_code, response.json()) == (202, {"status": "accepted"})
    [stored] = get(sandbox, "/api/events")["events"]
    assert (stored["event"], stored["distinct_id"], stored["properties"]["products"]) == (
        "viewed_product",
        "jane@example.com",
        [{"id": "1234"}],
    )


def test_invalid_event_is_answered_400_with_every_reason(sandbox: SandboxServer) -> None:
    response = post(sandbox, event("purchase", "x", products=[{"id": ""}]))
    assert response.status_code == 400
    assert response.json()["reasons"] == [
        "properties.products[0].id: must not be empty or blank",
        "properties.total: is required for purchase events",
        "properties.customer.email: a customer e-mail is required for purchase events",
    ]
    assert get(sandbox, "/api/events")["events"] == []


def test_event_without_token_is_refused(sandbox: SandboxServer) -> None:
    response = post(sandbox, event("viewed_product", "jane", token=None, products=[{"id": "1"}]))
    assert response.json()["reasons"] == ["properties.token: is required (the namespace)"]


def test_without_namespace_any_token_is_accepted(sandbox: SandboxServer) -> None:
    assert [post(sandbox, event("search", "a", token=t, search_term="x")).status_code for t in ("one", "two")] == [202, 202]


def test_namespace_refuses_other_tokens() -> None:
    with SandboxServer(namespace="bluestore") as sandbox:
        assert post(sandbox, event("search", "a", search_term="x")).status_code == 202
        refused = post(sandbox, event("search", "a", token="other", search_term="x"))
    assert refused.status_code == 400
    assert refused.json()["reasons"][0].startswith("properties.token: does not match")


def test_body_that_is_not_json_is_400(sandbox: SandboxServer) -> None:
    response = post(sandbox, b"{not json")
    assert response.status_code == 400
    assert response.json()["reasons"][0].startswith("body: is not valid JSON")


def test_oversized_body_is_413_without_being_read(sandbox: SandboxServer) -> None:
    response = post(sandbox, b" " * (1024 * 1024 + 1))
    assert response.status_code == 413


def test_rejections_are_listed_with_reasons(sandbox: SandboxServer) -> None:
    post(sandbox, event("search", "a"))
    [rejection] = get(sandbox, "/api/rejections")["rejections"]
    assert (rejection["event"], rejection["reasons"]) == (
        "search",
        ["properties.search_term: is required for search events (a non-empty string)"],
    )


def test_keep_alive_connections_stay_open(sandbox: SandboxServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
    statuses = []
    for distinct_id in ("a", "b", "c"):
        conn.request("POST", "/api/track/mobile/v1", json.dumps(view(distinct_id)), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        statuses.append((response.status, response.will_close))
    conn.close()
    assert statuses == [(202, False)] * 3


def test_concurrent_senders_are_all_stored(sandbox: SandboxServer) -> None:
    def send(worker: int) -> None:
        with requests.Session() as session:
            for i in range(40):
                session.post(sandbox.endpoint_url, json=view(f"w{worker}-{i}"), timeout=10).raise_for_status()

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert get(sandbox, "/api/stats")["accepted"] == 320


def test_error_rate_answers_500_and_stores_nothing() -> None:
    with SandboxServer(error_rate=1.0) as sandbox:
        assert post(sandbox, view("a")).status_code == 500
        assert get(sandbox, "/api/stats")["accepted"] == 0


def test_throttle_rate_answers_429_with_retry_after() -> None:
    with SandboxServer(throttle_rate=1.0, retry_after=7) as sandbox:
        response = post(sandbox, view("a"))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")


def test_drop_rate_closes_the_connection_without_an_answer() -> None:
    with SandboxServer(drop_rate=1.0) as sandbox, pytest.raises(requests.ConnectionError):
        post(sandbox, view("a"))


def test_latency_delays_each_answer() -> None:
    with SandboxServer(latency=0.3) as sandbox:
        started = time.monotonic()
        post(sandbox, view("a"))
        assert time.monotonic() - started >= 0.3


def test_fault_mix_matches_what_clients_saw() -> None:
    seen: Counter[object] = Counter()
    with SandboxServer(error_rate=0.25, throttle_rate=0.25, drop_rate=0.25, retry_after=0, seed=3) as sandbox:
        for i in range(60):
            try:
                seen[post(sandbox, view(f"c{i}")).status_code] += 1
            except requests.ConnectionError:
                seen["dropped"] += 1
        stats = get(sandbox, "/api/stats")
    served = stats["served"]
    assert (served["served_500"], served["served_429"], served["dropped"], stats["accepted"]) == (
        seen[500],
        seen[429],
        seen["dropped"],
        seen[202],
    )
    assert min(seen.values()) > 0


def test_delivery_engine_gets_every_event_through_the_faults() -> None:
    events = [view(f"c{i % 7}", product=str(i)) for i in range(150)]
    with SandboxServer(error_rate=0.1, throttle_rate=0.1, drop_rate=0.1, retry_after=0, seed=11) as sandbox:
        report = deliver(
            events,
            url=sandbox.endpoint_url,
            defaults=EventDefaults("bluestore"),
            retry=RetryPolicy(max_retries=20, backoff_base=0.001),
            user_agent="tests",
        )
        stored = get(sandbox, "/api/events?limit=1000")["events"]
    assert (report.sent, report.failed) == (150, 0)
    assert sorted(int(e["properties"]["products"][0]["id"]) for e in stored) == list(range(150))


def test_stats_count_per_event(sandbox: SandboxServer) -> None:
    for body in (view("a"), view("b"), view("a"), purchase("j@example.com", "o1"), event("search", "a")):
        post(sandbox, body)
    stats = get(sandbox, "/api/stats")
    per_event = {e["event"]: (e["accepted"], e["customers"], e["rejected"]) for e in stats["events"]}
    assert per_event == {"viewed_product": (3, 2, 0), "purchase": (1, 1, 0), "search": (0, 0, 1)}
    assert (stats["accepted"], stats["rejected"], stats["distinct_ids"]) == (4, 1, 3)


def test_events_endpoint_returns_newest_first_up_to_limit(sandbox: SandboxServer) -> None:
    for i in range(5):
        post(sandbox, view(f"c{i}"))
    assert [e["distinct_id"] for e in get(sandbox, "/api/events?limit=2")["events"]] == ["c4", "c3"]


def test_customer_timeline_follows_identify_links(sandbox: SandboxServer) -> None:
    for body in (view("device-1"), identify("device-1", "jane@example.com"), purchase("jane@example.com", "o1"), view("other")):
        post(sandbox, body)
    by_email = get(sandbox, "/api/customer?q=jane@example.com")
    by_device = get(sandbox, "/api/customer?q=device-1")
    assert [e["event"] for e in by_email["events"]] == ["purchase", "identify", "viewed_product"]
    assert by_device["events"] == by_email["events"]
    assert (by_email["distinct_ids"], by_email["emails"]) == (["device-1"], ["jane@example.com"])


def test_customer_profile_and_consent_come_from_the_latest_events(sandbox: SandboxServer) -> None:
    post(sandbox, event("customer_patch", "jane@example.com", customer={"first_name": "Jane", "tier": "gold"}))
    post(sandbox, event("customer_patch", "jane@example.com", customer={"tier": "platinum"}))
    post(sandbox, event("optin", "jane@example.com", email="jane@example.com"))
    post(sandbox, event("unsubscribe", "jane@example.com", email="jane@example.com"))
    customer = get(sandbox, "/api/customer?q=jane@example.com")
    assert customer["profile"] == {"first_name": "Jane", "tier": "platinum", "email": "jane@example.com"}
    assert customer["subscribed"] is False


def test_unknown_customer_is_not_found(sandbox: SandboxServer) -> None:
    assert get(sandbox, "/api/customer?q=nobody")["found"] is False


def test_audience_counts_customers_within_the_window() -> None:
    now = [1_800_000_000.0]
    with SandboxServer(clock=lambda: now[0]) as sandbox:
        for body in (purchase("old@example.com", "o1"), purchase("old@example.com", "o2")):
            post(sandbox, body)
        now[0] += 10 * DAY
        for body in (purchase("new@example.com", "o3"), purchase("new@example.com", "o4"), purchase("once@example.com", "o5")):
            post(sandbox, body)
        within_week = get(sandbox, "/api/audience?event=purchase&min=2&days=7")
        within_month = get(sandbox, "/api/audience?event=purchase&min=2&days=30")
    assert [c["customer"] for c in within_week["customers"]] == ["new@example.com"]
    assert within_month["count"] == 2


def test_audience_counts_a_device_for_the_email_it_was_identified_as(sandbox: SandboxServer) -> None:
    for body in (identify("device-1", "jane@example.com"), view("device-1"), view("jane@example.com")):
        post(sandbox, body)
    audience = get(sandbox, "/api/audience?event=viewed_product&min=2&days=1")
    assert audience["customers"] == [{"customer": "jane@example.com", "count": 2, "last_at": audience["customers"][0]["last_at"]}]


@pytest.mark.parametrize(
    ("query", "error"),
    [("", "event is required"), ("event=purchase&min=0", "min must be between"), ("event=purchase&days=x", "days must be")],
)
def test_audience_parameters_are_checked(sandbox: SandboxServer, query: str, error: str) -> None:
    response = requests.get(f"{sandbox.url}/api/audience?{query}", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_healthz_answers_ok(sandbox: SandboxServer) -> None:
    assert get(sandbox, "/healthz") == {"status": "ok"}


def test_db_file_keeps_events_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.sqlite3"
    with SandboxServer(db_path=db) as first:
        post(first, view("a"))
    with SandboxServer(db_path=db) as second:
        assert get(second, "/api/stats")["accepted"] == 1


def test_reset_empties_the_db_file(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.sqlite3"
    with SandboxServer(db_path=db) as first:
        post(first, view("a"))
    with SandboxServer(db_path=db, reset=True) as second:
        assert get(second, "/api/stats")["accepted"] == 0


def test_temporary_db_is_deleted_on_stop() -> None:
    sandbox = SandboxServer().start()
    db = sandbox.db_path
    assert db is not None
    assert db.exists()
    sandbox.stop()
    assert not db.exists()


def test_page_is_served_with_a_strict_content_security_policy(sandbox: SandboxServer) -> None:
    response = requests.get(sandbox.url + "/", timeout=10)
    assert response.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert '<script src="/app.js"' in response.text


@pytest.mark.parametrize("asset", ["/", "/app.js", "/app.css"])
def test_page_loads_nothing_from_elsewhere(sandbox: SandboxServer, asset: str) -> None:
    text = requests.get(sandbox.url + asset, timeout=10).text
    assert "http://" not in text
    assert "https://" not in text
    assert "//cdn" not in text


def test_page_script_never_parses_data_as_html(sandbox: SandboxServer) -> None:
    script = requests.get(sandbox.url + "/app.js", timeout=10).text
    assert not any(sink in script for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("))


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 1.5}, {"error_rate": 0.6, "drop_rate": 0.6}, {"latency": -1}, {"retry_after": 1.5}, {"namespace": " "}],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SandboxServer(**kwargs)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_requests_addressed_to_another_host_name_are_refused(sandbox: SandboxServer, host: str) -> None:
    response = requests.get(sandbox.url + "/api/events", headers={"Host": host}, timeout=10)
    assert response.status_code == 403


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1", "[::1]:8765"])
def test_requests_addressed_to_loopback_names_are_answered(sandbox: SandboxServer, host: str) -> None:
    assert requests.get(sandbox.url + "/healthz", headers={"Host": host}, timeout=10).status_code == 200


def test_head_probe_gets_a_status_without_a_body(sandbox: SandboxServer) -> None:
    track = requests.head(sandbox.url + "/api/track/mobile/v1", timeout=5)
    assert (track.status_code, track.headers["Allow"], track.content) == (405, "POST", b"")
    assert requests.head(sandbox.url + "/healthz", timeout=5).status_code == 200
    assert requests.head(sandbox.url + "/nope", timeout=5).status_code == 404


def test_hook_test_connection_against_the_sandbox_sends_nothing(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_bluecore.hooks.bluecore import BluecoreHook
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_BLUECORE_DEFAULT", conn_json(sandbox.url))
    ok, message = BluecoreHook().test_connection()
    assert ok, message
    assert "405" in message
    assert sandbox.store.stats()["accepted"] == 0
