"""The `bluecore` connection form in a real Airflow 3 UI: an api-server on 127.0.0.1 driven by headless Chromium.

One api-server (throwaway AIRFLOW_HOME, ``[core] test_connection = Enabled``) and one Chromium serve the whole module; both are
stopped at the end. The form is compared with the provider's single form table (``config.EXTRA_FIELDS`` through
``get_provider_info()``), not with a copy of it. Screenshots go to ``test-artifacts/connection-form/``.

Airflow 3.3.2's Test button answers "Bad Request" for a connection saved without a port (apache/airflow#73298, fixed
upstream), so the Bluecore form shows the Port field and the Test-button tests fill it in, as the README tells users to. One
test saves a connection without a port: it is a strict xfail while the Airflow bug is present, and fails once Airflow ships the
fix, to remind us to relax the README.

Airflow 2.x has no api-server: these tests carry the ``airflow3`` marker and are deselected there by design; the 2.x form is
checked without a browser in ``test_connection_form_airflow2.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from airflow_provider_bluecore.config import EXTRA_FIELDS, HIDDEN_FIELDS, BluecoreConfig
from airflow_provider_bluecore.get_provider_info import get_provider_info
from airflow_provider_bluecore.sandbox import SandboxServer
from tests.conftest import ARTIFACTS
from tests.ui_support import CHROMIUM_ARGS, AirflowApiServer, chromium_executable, free_port

pytestmark = [pytest.mark.airflow3, pytest.mark.browser, pytest.mark.airflow_db]

SHOTS = ARTIFACTS / "connection-form"
UI_TIMEOUT_MS = 45_000
FORM_CONN_ID = "bluecore_form"
#: What the form test types into the extra fields (strings, as a user types them) and what must be stored for each.
TYPED_EXTRAS = {"timeout": "7.5", "max_retries": "2", "max_events_per_second": "250", "device": "warehouse"}
STORED_EXTRAS = {"timeout": 7.5, "max_retries": 2, "max_events_per_second": 250, "device": "warehouse"}


# -- fixtures: one api-server, one sandbox, one browser per module -------------------------------------------------------


@pytest.fixture(scope="module")
def server(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowApiServer]:
    """A real Airflow 3 api-server with the provider installed, on a copy of the session's migrated metadata DB."""
    api = AirflowApiServer(
        tmp_path_factory.mktemp("ui-airflow-home"), database=Path(airflow_db) / "airflow.db", log_path=SHOTS / "api-server.log"
    )
    try:
        yield api.start()
    finally:
        api.stop()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    """The provider's local Bluecore sandbox: the reachable endpoint the api-server's connection test talks to."""
    with SandboxServer(namespace="bluestore") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    executable = chromium_executable()
    expect.set_options(timeout=UI_TIMEOUT_MS)  # a loaded CI machine renders slowly; every wait still has a deadline
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 1900})
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (tall enough for the whole connection dialog to fit in one screenshot)."""
    tab = new_page(browser)
    try:
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def hook_meta(server: AirflowApiServer) -> dict[str, Any]:
    """The `bluecore` entry of ``/ui/connections/hook_meta``: what the React UI renders the form from."""
    (entry,) = [m for m in server.get("/ui/connections/hook_meta") if m["connection_type"] == "bluecore"]
    return entry


def save_from_form(
    browser: Browser,
    server: AirflowApiServer,
    conn_id: str,
    url: str,
    port: int | None,
    *,
    via_menu: bool = False,
    shots: str = "",
) -> dict[str, Any]:
    """Make a connection the way a user makes it: Add Connection -> Bluecore, filled in, saved; return it as stored.

    With ``shots``, the extras are typed as well (``TYPED_EXTRAS``) and the filled form is photographed as ``<shots>-*.png``."""
    tab = new_page(browser)
    try:
        dialog = open_bluecore_form(tab, server, via_menu=via_menu)
        dialog.get_by_label("Connection ID").fill(conn_id)
        dialog.get_by_label("Namespace").fill("bluestore")
        dialog.get_by_label("API base URL").fill(url)
        if port is not None:
            dialog.get_by_label("Port").fill(str(port))
        if shots:
            dialog.screenshot(path=SHOTS / f"{shots}.png")
            dialog.get_by_role("button", name="Extra Fields", exact=True).click()
            for name, typed in TYPED_EXTRAS.items():
                extra_input(dialog, name).fill(typed)
            dialog.screenshot(path=SHOTS / f"{shots}-extras.png")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        expect(connection_row(tab, conn_id)).to_be_visible()
    finally:
        tab.close()
    return server.get(f"/api/v2/connections/{conn_id}")


@pytest.fixture(scope="module")
def form_connection(server: AirflowApiServer, sandbox: SandboxServer, browser: Browser) -> dict[str, Any]:
    """Made through Admin -> Connections -> Add Connection -> Bluecore: the sandbox's address and port, and some extras."""
    return save_from_form(browser, server, FORM_CONN_ID, "http://127.0.0.1", sandbox.port, via_menu=True, shots="form-filled")


# -- page helpers --------------------------------------------------------------------------------------------------------


def open_bluecore_form(page: Page, server: AirflowApiServer, *, via_menu: bool = False) -> Locator:
    """The Add Connection dialog with type Bluecore chosen (translations load asynchronously: wait for real text)."""
    page.goto(f"{server.url}/" if via_menu else f"{server.url}/connections")
    if via_menu:
        page.get_by_role("button", name="Admin").click()
        page.get_by_role("menuitem", name="Connections").click()
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Add Connection")).to_be_visible()
    dialog.get_by_role("combobox", name="Connection Type").fill("Bluecore")
    page.get_by_role("option", name="Bluecore", exact=True).click()
    expect(dialog.get_by_label("Namespace")).to_be_visible()
    return dialog


def extra_input(dialog: Locator, name: str) -> Locator:
    """The input of one extra field. By name: Airflow 3.3 does not tie string fields' labels to their inputs."""
    return dialog.locator(f'input[name="element_{name}"]')


def extra_row(dialog: Locator, name: str) -> Locator:
    """The form row (label, input, help text) of one extra field."""
    field_root = dialog.locator('[data-scope="field"][data-part="root"]')
    return field_root.filter(has=dialog.page.locator(f'input[name="element_{name}"]'))


def connection_row(page: Page, conn_id: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))


def press_test(page: Page, server: AirflowApiServer, conn_id: str, shot: str) -> tuple[str, str, str]:
    """Press the row's "Test Connection" button; return the result toast's (type, title, message) once it shows."""
    page.set_viewport_size({"width": 1280, "height": 760})
    page.goto(f"{server.url}/connections")
    connection_row(page, conn_id).get_by_role("button", name="Test Connection").click()
    toast = page.locator('[data-scope="toast"][data-part="root"]').first
    expect(toast).to_have_css("opacity", "1")  # fully faded in before the screenshot
    page.screenshot(path=SHOTS / shot)
    title = toast.locator('[data-part="title"]').inner_text()
    message = toast.locator('[data-part="description"]').inner_text()
    return toast.get_attribute("data-type") or "", title, message


def shown_number(value: float | None) -> str:
    """How the UI's number input shows a default: 10.0 as "10", 0.5 as "0.5", None as empty."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def ui_test_button_refuses_portless(server: AirflowApiServer, conn: dict[str, Any]) -> bool:
    """Whether this Airflow has the bug fixed upstream in apache/airflow#73298: Airflow 3.3.2's Test button sends
    ``port: Number(null)``, i.e. 0, for a connection without a port, and the API answers 400 "Bad Request" to it."""
    as_the_ui_sends_it = {**{k: conn[k] for k in ("connection_id", "conn_type", "host", "login", "extra")}, "port": 0}
    return requests.post(f"{server.url}/api/v2/connections/test", json=as_the_ui_sends_it, timeout=30).status_code == 400


# -- the form as the api-server describes it -----------------------------------------------------------------------------


def test_hook_meta_shows_namespace_and_base_url(hook_meta: dict[str, Any]) -> None:
    fields = hook_meta["standard_fields"]
    assert (fields["login"]["hidden"], fields["login"]["title"], fields["login"]["placeholder"]) == (
        False,
        "Namespace",
        "bluestore",
    )
    assert (fields["host"]["hidden"], fields["host"]["title"]) == (False, "API base URL")
    assert fields["host"]["placeholder"] == "https://api.bluecore.app"


def test_hook_meta_hides_the_unused_standard_fields(hook_meta: dict[str, Any]) -> None:
    hidden = {name for name, field in hook_meta["standard_fields"].items() if field and field["hidden"]}
    assert hidden == {"url_schema" if name == "schema" else name for name in HIDDEN_FIELDS}  # the UI calls schema url_schema
    assert hidden == {"url_schema", "password"}
    port = hook_meta["standard_fields"]["port"]
    assert (port["hidden"], port["placeholder"]) == (False, "443")  # shown: Airflow 3.3.2's Test button needs a stored port


def test_hook_meta_has_every_extra_field_of_the_form_table(hook_meta: dict[str, Any]) -> None:
    (declared,) = get_provider_info()["connection-types"]
    expected = {
        name: {"schema": {**spec["schema"], "title": spec["label"]}, "description": spec["description"]}
        for name, spec in declared["conn-fields"].items()
    }
    shown = {name: {"schema": f["schema"], "description": f["description"]} for name, f in hook_meta["extra_fields"].items()}
    assert shown == expected
    assert list(shown) == [f.name for f in EXTRA_FIELDS]  # in the table's order


def test_hook_meta_prefills_each_extra_with_its_default(hook_meta: dict[str, Any]) -> None:
    assert {name: f["value"] for name, f in hook_meta["extra_fields"].items()} == {f.name: f.default for f in EXTRA_FIELDS}


def test_hook_meta_spot_checks_a_user_would_notice(hook_meta: dict[str, Any]) -> None:
    extras = hook_meta["extra_fields"]
    assert (
        extras["timeout"]["schema"].items() >= {"title": "Read timeout (s)", "type": ["number", "null"], "default": 10.0}.items()
    )
    assert extras["max_retries"]["schema"].items() >= {"type": ["integer", "null"], "default": 5, "minimum": 0}.items()
    assert extras["concurrency"]["value"] == 16
    assert extras["allow_insecure_http"]["schema"]["type"] == ["boolean", "null"]
    assert extras["allow_insecure_http"]["value"] is False
    assert not [name for name, f in extras.items() if f["schema"].get("format") == "password"]  # the namespace is no secret


# -- the form in the browser ---------------------------------------------------------------------------------------------


def test_form_shows_namespace_and_base_url_and_nothing_unused(page: Page, server: AirflowApiServer) -> None:
    dialog = open_bluecore_form(page, server)
    dialog.screenshot(path=SHOTS / "form-empty.png")
    expect(dialog.get_by_label("Namespace")).to_have_attribute("placeholder", "bluestore")
    expect(dialog.get_by_label("API base URL")).to_have_attribute("placeholder", "https://api.bluecore.app")
    expect(dialog.get_by_label("Port")).to_have_attribute("placeholder", "443")
    for name in ("login", "host", "port"):
        expect(dialog.locator(f'input[name="{name}"]')).to_be_visible()
    for name in HIDDEN_FIELDS:
        expect(dialog.locator(f'[name="{name}"]')).to_have_count(0)


def test_form_shows_every_extra_field_with_label_type_and_default(page: Page, server: AirflowApiServer) -> None:
    dialog = open_bluecore_form(page, server)
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    expect(extra_input(dialog, EXTRA_FIELDS[-1].name)).to_be_visible()
    dialog.screenshot(path=SHOTS / "form-extras-defaults.png")
    for field in EXTRA_FIELDS:
        row, box = extra_row(dialog, field.name), extra_input(dialog, field.name)
        expect(row.locator('[data-part="label"]').first).to_have_text(field.label)
        expect(row.locator('[data-part="helper-text"]')).to_have_text(field.description)
        if field.kind == "boolean":
            expect(box).to_have_attribute("type", "checkbox")
            expect(box).to_be_checked(checked=bool(field.default))
        elif field.kind == "string":
            expect(box).not_to_have_attribute("role", "spinbutton")
            expect(box).to_have_value("")
        else:
            expect(box).to_have_attribute("role", "spinbutton")
            expect(box).to_have_value(shown_number(field.default))


# -- saving and testing through the UI -----------------------------------------------------------------------------------


def test_connection_saved_from_the_form_is_a_bluecore_connection(form_connection: dict[str, Any], sandbox: SandboxServer) -> None:
    stored = tuple(form_connection[k] for k in ("conn_type", "login", "host", "port"))
    assert stored == ("bluecore", "bluestore", "http://127.0.0.1", sandbox.port)
    assert json.loads(form_connection["extra"]).items() >= STORED_EXTRAS.items()


def test_connection_saved_from_the_form_reads_as_the_values_typed(
    form_connection: dict[str, Any], sandbox: SandboxServer
) -> None:
    conn = form_connection
    config = BluecoreConfig.from_connection(conn["login"], conn["host"], conn["extra"], port=conn["port"])
    assert (config.namespace, config.base_url, config.timeout, config.max_retries) == ("bluestore", sandbox.url, 7.5, 2)
    assert (config.max_events_per_second, config.device, config.concurrency) == (250, "warehouse", 16)  # untouched: default


def test_connection_saved_from_the_form_passes_the_api_connection_test(
    form_connection: dict[str, Any], server: AirflowApiServer
) -> None:
    body = {k: form_connection[k] for k in ("connection_id", "conn_type", "host", "port", "login", "extra")}
    result = server.post("/api/v2/connections/test", body)
    assert result["status"] is True, result["message"]


def test_test_button_on_the_form_connection_shows_success(
    form_connection: dict[str, Any], page: Page, server: AirflowApiServer, sandbox: SandboxServer
) -> None:
    kind, title, message = press_test(page, server, FORM_CONN_ID, "test-success.png")
    assert (kind, title) == ("success", "Test Connection Successful"), message
    assert message.startswith(f"{sandbox.endpoint_url} is reachable: it answered HTTP")
    assert message.endswith("(namespace 'bluestore'). No event was sent.")
    assert sandbox.counters.snapshot()["requests"] == 0  # the test sent no event


def test_test_button_shows_a_clear_failure_for_an_unreachable_host(
    page: Page, server: AirflowApiServer, browser: Browser
) -> None:
    """Made in the form like the one above, but pointing at a closed port on 127.0.0.1."""
    closed = free_port()
    save_from_form(browser, server, "bluecore_unreachable", "http://127.0.0.1", closed)
    kind, title, message = press_test(page, server, "bluecore_unreachable", "test-failure.png")
    assert (kind, title) == ("error", "Test Connection Failed"), message
    assert message == f"Cannot reach http://127.0.0.1:{closed}/api/track/mobile/v1: Connection refused (ConnectionError)"


def test_test_button_on_a_connection_saved_without_a_port(
    page: Page, server: AirflowApiServer, sandbox: SandboxServer, browser: Browser, request: pytest.FixtureRequest
) -> None:
    """The port written in the API base URL and the Port field left empty: the Airflow bug's case."""
    conn = save_from_form(browser, server, "bluecore_portless", sandbox.url, None)
    assert (conn["host"], conn["port"]) == (sandbox.url, None)
    if ui_test_button_refuses_portless(server, conn):
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="Airflow 3.3.2 bug (port 0 vs none), fixed in apache/airflow#73298")
        )
    kind, title, message = press_test(page, server, "bluecore_portless", "test-portless.png")
    assert (kind, title) == ("success", "Test Connection Successful"), message


def test_setting_the_port_on_a_portless_connection_makes_the_test_button_work(
    page: Page, server: AirflowApiServer, sandbox: SandboxServer, browser: Browser
) -> None:
    """The README's remedy for "Bad Request": edit the connection, fill in Port, save, press Test again."""
    save_from_form(browser, server, "bluecore_port_added", sandbox.url, None)
    page.goto(f"{server.url}/connections")
    connection_row(page, "bluecore_port_added").get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("API base URL")).to_have_value(sandbox.url)
    dialog.get_by_label("Port").fill(str(sandbox.port))
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    assert server.get("/api/v2/connections/bluecore_port_added")["port"] == sandbox.port
    kind, title, message = press_test(page, server, "bluecore_port_added", "test-port-added.png")
    assert (kind, title) == ("success", "Test Connection Successful"), message
    assert message.startswith(f"{sandbox.endpoint_url} is reachable")
