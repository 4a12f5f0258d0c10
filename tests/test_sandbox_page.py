"""The sandbox page in a real headless Chromium (Debian's `chromium`, installed by `make system-deps`).

Chromium loads the page from a real sandbox holding real events, runs its JavaScript (``--virtual-time-budget`` lets the
fetches finish), and the resulting DOM is checked for the numbers shown. A screenshot is kept in ARTIFACTS.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_bluecore.sandbox import SandboxServer
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="document.title=1">'
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,1800",
    "--virtual-time-budget=8000",
]


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; its standard output."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: run `make system-deps` (bash scripts/system-deps.sh)")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


class Node:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []  # type: ignore[var-annotated]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, predicate: Any) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                if predicate(child):
                    yield child
                yield from child.find_all(predicate)

    def by_id(self, ident: str) -> Node:
        return next(self.find_all(lambda n: n.attrs.get("id") == ident))


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "input", "br", "img", "hr", "col", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(url: str, profile: Path) -> Node:
    """The page's DOM after its scripts ran; fails unless the page reports it finished loading."""
    builder = _TreeBuilder()
    builder.feed(chromium(url, profile, "--dump-dom"))
    body = next(builder.root.find_all(lambda n: n.tag == "body"))
    assert body.attrs.get("data-state") == "ready", "the page did not finish loading its data"
    return builder.root


def row_cells(page: Node, table_id: str, event: str) -> list[str]:
    row = next(page.by_id(table_id).find_all(lambda n: n.tag == "tr" and n.attrs.get("data-event") == event))
    return [td.text().strip() for td in row.find_all(lambda n: n.tag == "td")]


def send(sandbox: SandboxServer, name: str, distinct_id: str, **props: Any) -> None:
    body = {"event": name, "properties": {"distinct_id": distinct_id, "token": "bluestore", **props}}
    requests.post(sandbox.endpoint_url, json=body, timeout=10)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    """A sandbox holding: a device identified as Jane, Jane's 3 purchases, Bob's 1, a custom event, 2 rejected events."""
    with SandboxServer(namespace="bluestore") as server:
        send(server, "viewed_product", "device-1", products=[{"id": "1234"}])
        send(server, "identify", "device-1", customer={"email": "jane@example.com"})
        for i in range(3):
            send(
                server,
                "purchase",
                "jane@example.com",
                products=[{"id": "1"}],
                total=20 + i,
                order_id=f"o{i}",
                customer={"email": "jane@example.com", "first_name": "Jane"},
            )
        send(
            server,
            "purchase",
            "bob@example.com",
            products=[{"id": "7"}],
            total=5,
            order_id="b1",
            customer={"email": "bob@example.com"},
        )
        send(server, "optin", "jane@example.com", email="jane@example.com")
        send(server, "sweepstakes_signup", "zed")
        send(server, "purchase", "x")  # rejected: no products, total, e-mail
        send(server, "search", "x", search_term="a", token="other")  # rejected: another namespace
        yield server


def test_page_shows_the_totals(sandbox: SandboxServer, tmp_path: Path) -> None:
    page = dom(sandbox.url + "/", tmp_path / "profile")
    totals = [page.by_id(i).text() for i in ("total-accepted", "total-rejected", "total-customers")]
    assert totals == ["8", "2", "4"]
    assert row_cells(page, "event-totals", "purchase")[1:4] == ["4", "2", "1"]
    assert row_cells(page, "event-totals", "sweepstakes_signup")[1:4] == ["1", "1", "0"]
    assert page.by_id("namespace").text() == "bluestore"


def test_page_shows_a_customer_timeline_and_an_audience(sandbox: SandboxServer, tmp_path: Path) -> None:
    url = sandbox.url + "/?q=device-1&event=purchase&min=2&days=7"
    page = dom(url, tmp_path / "profile")
    assert page.by_id("customer-total").text() == "6"  # the device's view + identify, and Jane's 3 purchases + optin
    assert page.by_id("customer-consent").text() == "Consent: subscribed (last: optin)"
    assert page.by_id("audience-count").text() == "1"
    audience = page.by_id("audience-customers")
    assert [td.text() for td in audience.find_all(lambda n: n.tag == "td")][:2] == ["jane@example.com", "3"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chromium(url, tmp_path / "profile-shot", f"--screenshot={ARTIFACTS / 'sandbox-page.png'}")
    assert (ARTIFACTS / "sandbox-page.png").stat().st_size > 10_000


def test_page_shows_event_data_as_text_never_as_markup(tmp_path: Path) -> None:
    with SandboxServer() as sandbox:
        send(sandbox, "search", XSS, search_term="<script>document.title=2</script>")
        page = dom(f"{sandbox.url}/?q={requests.utils.quote(XSS)}", tmp_path / "profile")
    assert list(page.find_all(lambda n: n.tag == "img")) == []
    assert len(list(page.find_all(lambda n: n.tag == "script"))) == 1  # the page's own app.js
    latest = page.by_id("latest-events").text()
    assert XSS in latest
    assert "<script>document.title=2</script>" in latest
    assert page.by_id("customer-total").text() == "1"
