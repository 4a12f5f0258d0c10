"""BluecoreHook against the real stub server on 127.0.0.1 (connections injected as AIRFLOW_CONN_* variables)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
import requests

from airflow_provider_bluecore import __version__
from airflow_provider_bluecore.exceptions import BluecoreApiError, BluecoreConfigError, BluecoreValidationError
from airflow_provider_bluecore.hooks.bluecore import BluecoreHook, _excerpt, _unreachable_reason
from tests.conftest import conn_json
from tests.stub_server import Received, StubBluecore
from tests.ui_support import free_port

VIEW = {"event": "viewed_product", "properties": {"distinct_id": "jane@example.com", "products": [{"id": "1234"}]}}


@pytest.fixture
def stub(bluecore_server: StubBluecore, monkeypatch: pytest.MonkeyPatch) -> StubBluecore:
    """`bluecore_default` on the stub, with two retries and no backoff wait (Retry-After still applies)."""
    conn = conn_json(bluecore_server.url, max_retries=2, backoff_base=0, client="4.0", device="warehouse")
    monkeypatch.setenv("AIRFLOW_CONN_BLUECORE_DEFAULT", conn)
    return bluecore_server


@pytest.fixture
def warnings_logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], list[str]]:
    """Warning lines the hook logged: stdlib logging on Airflow 2, structlog's console output on Airflow 3."""
    caplog.set_level(logging.WARNING)

    def lines() -> list[str]:
        printed = [line for line in capsys.readouterr().out.splitlines() if "[warning" in line]
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] + printed

    return lines


def answered(server: StubBluecore, n: int) -> list[Received]:
    """The requests the stub answered, once ``n`` are recorded: it records a request only after sending its answer."""
    deadline = time.monotonic() + 5
    while len(server.received) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.received


def test_init_does_no_io() -> None:
    hook = BluecoreHook(bluecore_conn_id="does_not_exist")  # would raise if __init__ looked the connection up
    assert hook.bluecore_conn_id == "does_not_exist"
    with pytest.raises(Exception, match="does_not_exist"):
        hook.config  # noqa: B018


def test_send_event_posts_the_prepared_body(stub: StubBluecore) -> None:
    with BluecoreHook() as hook:
        hook.send_event(VIEW)
    (request,) = answered(stub, 1)
    assert (request.method, request.path) == ("POST", "/api/track/mobile/v1")
    assert request.body == {
        "event": "viewed_product",
        "properties": {
            "distinct_id": "jane@example.com",
            "products": [{"id": "1234"}],
            "token": "bluestore",
            "client": "4.0",
            "device": "warehouse",
        },
    }


def test_send_event_sends_user_agent_and_json_content_type(stub: StubBluecore) -> None:
    with BluecoreHook() as hook:
        hook.send_event(VIEW)
    headers = {k.lower(): v for k, v in answered(stub, 1)[0].headers.items()}
    assert headers["user-agent"] == f"airflow-provider-bluecore/{__version__}"
    assert headers["content-type"] == "application/json"


def test_any_2xx_is_accepted(stub: StubBluecore) -> None:
    stub.state.script = [200, 204]
    with BluecoreHook() as hook:
        hook.send_event(VIEW)
        hook.send_event(VIEW)
    assert [r.answered for r in answered(stub, 2)] == [200, 204]


def test_invalid_event_is_not_sent(stub: StubBluecore) -> None:
    event = {"event": "purchase", "properties": {"distinct_id": " ", "total": float("nan")}}
    with BluecoreHook() as hook, pytest.raises(BluecoreValidationError) as err:
        hook.send_event(event)
    assert {p.field for p in err.value.problems} >= {"properties.distinct_id", "properties.total", "properties.products"}
    assert stub.state.count == 0


def test_500_is_retried_and_logged_at_warning(stub: StubBluecore, warnings_logged: Callable[[], list[str]]) -> None:
    stub.state.script = [500]
    with BluecoreHook() as hook:
        hook.send_event(VIEW)
    assert [r.answered for r in answered(stub, 2)] == [500, 202]
    (warning,) = warnings_logged()
    assert "HTTP 500" in warning
    assert "retry 1/2" in warning
    assert "jane@example.com" not in warning


def test_429_is_retried_after_the_retry_after_header(stub: StubBluecore, warnings_logged: Callable[[], list[str]]) -> None:
    stub.state.script = [(429, {"Retry-After": "0.05"})]
    with BluecoreHook() as hook:
        hook.send_event(VIEW)
    assert [r.answered for r in answered(stub, 2)] == [429, 202]
    assert "in 0.05 s" in warnings_logged()[-1]  # backoff_base is 0: only Retry-After can make it 0.05


def test_dropped_connection_is_retried(stub: StubBluecore, warnings_logged: Callable[[], list[str]]) -> None:
    stub.state.script = ["drop"]
    with BluecoreHook() as hook:
        hook.send_event(VIEW)
    assert stub.state.count == 2
    assert [r.answered for r in answered(stub, 1)] == [202]
    assert "ConnectionError" in warnings_logged()[-1]


def test_400_is_not_retried(stub: StubBluecore) -> None:
    stub.state.script = [400]
    with BluecoreHook() as hook, pytest.raises(BluecoreApiError) as err:
        hook.send_event(VIEW)
    assert (err.value.status, err.value.attempts) == (400, 1)
    assert "stub says no" in err.value.body_excerpt
    assert stub.state.count == 1


def test_501_is_not_retried(stub: StubBluecore) -> None:
    stub.state.script = [501]
    with BluecoreHook() as hook, pytest.raises(BluecoreApiError, match="HTTP 501"):
        hook.send_event(VIEW)
    assert stub.state.count == 1


def test_retries_run_out_with_the_last_status(stub: StubBluecore) -> None:
    stub.state.default = 503
    with BluecoreHook() as hook, pytest.raises(BluecoreApiError, match="gave up after 3 attempts") as err:
        hook.send_event(VIEW)
    assert (err.value.status, err.value.attempts) == (503, 3)
    assert stub.state.count == 3


def test_a_server_that_never_answers_times_out(bluecore_server: StubBluecore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SLOW", conn_json(bluecore_server.url, timeout=0.2, max_retries=1, backoff_base=0))
    bluecore_server.state.default = ("delay", 1.0, 202)
    with BluecoreHook("slow") as hook, pytest.raises(BluecoreApiError, match="ReadTimeout") as err:
        hook.send_event(VIEW)
    assert (err.value.status, err.value.attempts) == (None, 2)


def test_uri_form_connection_works(bluecore_server: StubBluecore, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"bluecore://bluestore@{quote(bluecore_server.url, safe='')}/?max_retries=0&client=4.0&allow_insecure_http=false"
    monkeypatch.setenv("AIRFLOW_CONN_BLUECORE_URI", uri)
    with BluecoreHook("bluecore_uri") as hook:
        hook.send_event(VIEW)
        assert hook.config.max_retries == 0
    assert answered(bluecore_server, 1)[0].body["properties"]["client"] == "4.0"


def test_uri_form_port_is_part_of_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL", "bluecore://bluestore@localhost:8765?timeout=2")
    config = BluecoreHook("local").config
    assert config.endpoint_url == "https://localhost:8765/api/track/mobile/v1"
    assert config.timeout == 2.0


def test_config_error_names_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BAD", conn_json("https://api.bluecore.app", timeout="abc"))
    with pytest.raises(BluecoreConfigError, match=r"'bad'.*extra\.timeout: must be a number of seconds > 0, got 'abc'"):
        BluecoreHook("bad").config  # noqa: B018


def test_a_connection_of_another_type_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HTTP", '{"conn_type": "http", "login": "bluestore", "host": "https://api.bluecore.app"}')
    with pytest.raises(BluecoreConfigError, match="conn_type must be 'bluecore', got 'http'"):
        BluecoreHook("http").config  # noqa: B018


def test_test_connection_succeeds_without_sending_an_event(stub: StubBluecore) -> None:
    stub.state.default = 405
    ok, message = BluecoreHook().test_connection()
    assert ok, message
    assert "HTTP 405" in message
    assert [r.method for r in answered(stub, 1)] == ["HEAD"]


def test_test_connection_fails_on_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOSED", conn_json(f"http://127.0.0.1:{free_port()}"))
    ok, message = BluecoreHook("closed").test_connection()
    assert not ok
    assert "Cannot reach" in message


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            requests.ConnectionError("... (Caused by NewConnectionError('...: [Errno 111] Connection refused'))"),
            "Connection refused",
        ),
        (
            requests.ConnectionError("...: Failed to resolve 'x.invalid' ([Errno -2] Name or service not known)\"))"),
            "Name or service not known",
        ),
        (
            requests.exceptions.SSLError(
                "(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)')"
            ),
            "TLS error: certificate verify failed: self-signed certificate",
        ),
        (requests.ConnectTimeout("..."), "no answer in time (connect timeout 5 s, read timeout 2.5 s)"),
    ],
)
def test_unreachable_reason_names_the_cause_not_urllib3s_wrapper(error: requests.RequestException, reason: str) -> None:
    assert _unreachable_reason(error, (5.0, 2.5)) == reason


def test_test_connection_reports_a_bad_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INSECURE", conn_json("http://example.com"))
    ok, message = BluecoreHook("insecure").test_connection()
    assert not ok
    assert "plain http:// is accepted only for loopback hosts" in message


def test_close_releases_the_session_and_a_later_call_opens_a_new_one(stub: StubBluecore) -> None:
    hook = BluecoreHook()
    first = hook.get_conn()
    hook.close()
    assert hook.get_conn() is not first
    hook.send_event(VIEW)
    hook.close()
    assert [r.method for r in answered(stub, 1)] == ["POST"]


def test_error_excerpt_redacts_email_addresses() -> None:
    assert _excerpt('{"error": "bad customer jane.doe@example.com"}') == '{"error": "bad customer j***@example.com"}'
