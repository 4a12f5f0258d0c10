"""BluecoreConfig: the `bluecore` connection parsed strictly, whichever form it came in."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_provider_bluecore.config import BluecoreConfig
from airflow_provider_bluecore.events import EventDefaults
from airflow_provider_bluecore.exceptions import BluecoreConfigError
from airflow_provider_bluecore.retry import RetryPolicy


def parse(host: Any = None, login: Any = "bluestore", port: Any = None, **extra: Any) -> BluecoreConfig:
    return BluecoreConfig.from_connection(login, host, extra, port=port)


def test_defaults() -> None:
    config = parse()
    assert config.endpoint_url == "https://api.bluecore.app/api/track/mobile/v1"
    assert (config.timeout, config.connect_timeout, config.max_retries, config.concurrency) == (10, 5, 5, 16)
    assert (config.max_events_per_second, config.allow_insecure_http, config.max_event_bytes) == (None, False, 32 * 1024)


def test_host_without_scheme_gets_https() -> None:
    assert parse("proxy.example.com:8443").base_url == "https://proxy.example.com:8443"


def test_old_bluecore_host_warns_and_uses_the_new_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_provider_bluecore.config")
    assert parse("https://api.bluecore.com").base_url == "https://api.bluecore.app"
    assert "api.bluecore.com is Bluecore's old endpoint" in caplog.text


def test_pasted_endpoint_path_and_trailing_slash_are_removed() -> None:
    assert parse("https://api.bluecore.app/api/track/mobile/v1/").endpoint_url == "https://api.bluecore.app/api/track/mobile/v1"


@pytest.mark.parametrize("host", ["http://127.0.0.1:8765", "http://127.9.8.7", "http://[::1]:8765", "http://localhost:8765"])
def test_plain_http_is_accepted_for_loopback_hosts(host: str) -> None:
    assert parse(host).base_url == host


def test_plain_http_elsewhere_is_refused() -> None:
    with pytest.raises(BluecoreConfigError, match=r"host: plain http:// is accepted only for loopback hosts .*'10\.0\.0\.5'"):
        parse("http://10.0.0.5:8080")


@pytest.mark.parametrize("flag", [True, "true", "TRUE", "yes", "on", "1", 1])
def test_allow_insecure_http_permits_plain_http(flag: Any) -> None:
    assert parse("http://proxy.internal", allow_insecure_http=flag).base_url == "http://proxy.internal"


@pytest.mark.parametrize("flag", [False, "false", "False", "no", "off", "0", 0])
def test_false_strings_are_false(flag: Any) -> None:
    assert parse(allow_insecure_http=flag).allow_insecure_http is False


def test_unreadable_boolean_is_an_error() -> None:
    with pytest.raises(BluecoreConfigError, match=r"extra\.allow_insecure_http: must be true or false .*got 'maybe'"):
        parse(allow_insecure_http="maybe")


@pytest.mark.parametrize("host", ["ftp://api.bluecore.app", "file:///etc/passwd"])
def test_other_schemes_are_refused(host: str) -> None:
    with pytest.raises(BluecoreConfigError, match="host: the scheme must be https://"):
        parse(host)


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("   ", "host: must not be blank"),
        (" https://api.bluecore.app", "host: must not start or end with whitespace"),
        ("https://user:pw@api.bluecore.app", "host: must not contain credentials"),
        ("https://api.bluecore.app?x=1", "host: must not contain a query string"),
        ("https://api.bluecore.app:99999", "host: is not a valid URL"),
    ],
)
def test_malformed_hosts_are_refused(host: str, rule: str) -> None:
    with pytest.raises(BluecoreConfigError, match=rule):
        parse(host)


def test_empty_host_means_the_default() -> None:
    assert parse("").base_url == "https://api.bluecore.app"


def test_port_from_the_uri_form_joins_the_host() -> None:
    assert parse("http://127.0.0.1", port=8765).base_url == "http://127.0.0.1:8765"


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        (None, 443, "https://api.bluecore.app"),  # the form's placeholder, typed in: the default port adds nothing
        ("https://api.bluecore.app", "443", "https://api.bluecore.app"),  # the 2.x form and URIs give text
        ("https://api.bluecore.app:443", 443, "https://api.bluecore.app"),  # said twice, consistently
        ("https://api.bluecore.app", 8443, "https://api.bluecore.app:8443"),
    ],
)
def test_port_from_the_form_field(host: str | None, port: Any, url: str) -> None:
    assert parse(host, port=port).base_url == url


@pytest.mark.parametrize("port", [0, 65536, "https", -1])
def test_port_outside_the_tcp_range_is_an_error(port: Any) -> None:
    with pytest.raises(BluecoreConfigError, match="port: must be a whole number between 1 and 65535"):
        parse("https://api.bluecore.app", port=port)


def test_port_contradicting_the_host_is_an_error() -> None:
    with pytest.raises(BluecoreConfigError, match="port: 8000 contradicts the port 8765 in host"):
        parse("http://127.0.0.1:8765", port=8000)


@pytest.mark.parametrize("login", [None, "", "   "])
def test_namespace_is_required(login: Any) -> None:
    with pytest.raises(BluecoreConfigError, match=r"login \(Namespace\): is required"):
        parse(login=login)


def test_namespace_with_surrounding_whitespace_is_refused_not_trimmed() -> None:
    with pytest.raises(BluecoreConfigError, match=r"login \(Namespace\): must not start or end with whitespace, got ' bluest"):
        parse(login=" bluestore")


def test_non_numeric_timeout_names_field_and_rule() -> None:
    with pytest.raises(BluecoreConfigError, match=r"extra\.timeout: must be a number of seconds > 0, got 'abc'"):
        parse(timeout="abc")


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"timeout": 0}, r"extra\.timeout: must be a number of seconds > 0, got 0"),
        ({"connect_timeout": -1}, r"extra\.connect_timeout: must be a number of seconds > 0, got -1"),
        ({"timeout": "nan"}, r"extra\.timeout: must be a number of seconds > 0, got 'nan'"),
        ({"timeout": "inf"}, r"extra\.timeout: must be a number of seconds > 0"),
        ({"timeout": True}, r"extra\.timeout: must be a number of seconds > 0, got True"),
        ({"max_retries": -1}, r"extra\.max_retries: must be a whole number >= 0, got -1"),
        ({"max_retries": "2.5"}, r"extra\.max_retries: must be a whole number >= 0, got '2\.5'"),
        ({"concurrency": 0}, r"extra\.concurrency: must be a whole number >= 1, got 0"),
        ({"max_events_per_second": "0"}, r"extra\.max_events_per_second: must be a number of events per second > 0"),
        ({"max_event_bytes": 0}, r"extra\.max_event_bytes: must be a whole number of bytes >= 1, got 0"),
        ({"backoff_base": -0.1}, r"extra\.backoff_base: must be a number of seconds >= 0, got -0\.1"),
        ({"client": 4.0}, r"extra\.client: must be a string \(quote it in JSON\), got 4\.0"),
    ],
)
def test_out_of_range_and_mistyped_extras_are_refused(extra: dict[str, Any], rule: str) -> None:
    with pytest.raises(BluecoreConfigError, match=rule):
        parse(**extra)


def test_uri_form_strings_are_parsed_into_types() -> None:
    config = parse(timeout="2.5", connect_timeout="1", max_retries="3", concurrency="4", max_events_per_second="50")
    assert (config.timeout, config.connect_timeout, config.max_retries, config.concurrency) == (2.5, 1.0, 3, 4)
    assert config.max_events_per_second == 50.0


def test_null_and_empty_extras_take_their_defaults() -> None:
    config = parse(timeout=None, max_retries="", client="", max_events_per_second=None)
    assert (config.timeout, config.max_retries, config.client, config.max_events_per_second) == (10, 5, None, None)


def test_unknown_extra_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(BluecoreConfigError, match=r"extra\.timout: unknown setting; did you mean 'timeout'\?"):
        parse(timout=5)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(BluecoreConfigError) as err:
        BluecoreConfig.from_connection("", "ftp://x", {"timeout": "abc", "concurrency": 0})
    for field in ("login (Namespace)", "host", "extra.timeout", "extra.concurrency"):
        assert f"{field}:" in str(err.value)


def test_extra_as_json_string() -> None:
    assert BluecoreConfig.from_connection("bluestore", None, '{"max_retries": 1}').max_retries == 1


def test_extra_that_is_not_a_json_object_is_an_error() -> None:
    with pytest.raises(BluecoreConfigError, match="extra: must be a JSON object"):
        BluecoreConfig.from_connection("bluestore", None, "[1, 2]")


def test_defaults_and_retry_policy_come_from_the_connection() -> None:
    config = parse(client="4.0", device="warehouse", max_event_bytes=1000, max_retries=2, backoff_base=0.1)
    assert config.defaults == EventDefaults("bluestore", "4.0", "warehouse", 1000)
    assert config.retry_policy == RetryPolicy(max_retries=2, backoff_base=0.1)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(BluecoreConfigError, match=r"extra\.concurrency: must be a whole number >= 1, got 0"):
        BluecoreConfig("bluestore", concurrency=0)


def test_direct_construction_normalises_the_base_url() -> None:
    assert BluecoreConfig("bluestore", base_url="127.0.0.1:9").base_url == "https://127.0.0.1:9"
