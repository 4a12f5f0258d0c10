"""The `bluecore` command: in-process through ``main`` where that is enough, as the real console script where it matters
(``send`` through a real AIRFLOW_CONN_* connection, ``sandbox`` serving until interrupted, the progress bar on a terminal)."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_bluecore import cli
from airflow_provider_bluecore.cli_events import EventFile
from airflow_provider_bluecore.sandbox import SandboxServer
from tests.conftest import conn_json

BLUECORE = str(Path(sys.executable).with_name("bluecore"))
VIEW = {"event": "viewed_product", "properties": {"distinct_id": "jane@example.com", "products": [{"id": "1"}]}}
BAD = {"event": "purchase", "properties": {"distinct_id": "x"}}


def view(i: int) -> dict[str, Any]:
    return {"event": "viewed_product", "properties": {"distinct_id": f"c{i}", "products": [{"id": str(i)}]}}


def jsonl(path: Path, *lines: Any) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def run(*argv: str) -> int:
    return cli.main(list(argv))


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    """A sandbox enforcing `bluestore`, reachable through the connection `sandbox_test` (fast retries)."""
    with SandboxServer(namespace="bluestore") as server:
        monkeypatch.setenv("AIRFLOW_CONN_SANDBOX_TEST", conn_json(server.url, max_retries=2, backoff_base=0))
        yield server


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("--help")
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(f"    {name} " in out for name in ("sandbox", "validate", "send"))


@pytest.mark.parametrize("command", ["sandbox", "validate", "send"])
def test_command_help_explains_itself_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(command, "--help")
    out = capsys.readouterr().out
    description, examples = out.split("\nexamples:\n")
    assert len(description.split("\n\n")[1]) > 80  # a real paragraph under the usage line
    assert f"\n  bluecore {command} " in f"\n{examples}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run() == 2
    assert "usage: bluecore" in capsys.readouterr().err


def test_validate_accepts_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("validate", jsonl(tmp_path / "e.jsonl", VIEW, VIEW)) == 0
    assert capsys.readouterr().out.endswith("2 events checked, 2 valid, 0 invalid\n")


def test_validate_reports_line_numbers_and_every_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("validate", jsonl(tmp_path / "e.jsonl", VIEW, "", BAD)) == 1
    assert capsys.readouterr().out.splitlines()[:4] == [
        "line 3: purchase: 3 problems",
        "    properties.products: is required for purchase events",
        "    properties.total: is required for purchase events",
        "    properties.customer.email: a customer e-mail is required for purchase events",
    ]


def test_validate_reports_array_indexes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "e.json").write_text(json.dumps([VIEW, VIEW, BAD], indent=2))
    assert run("validate", str(tmp_path / "e.json")) == 1
    assert capsys.readouterr().out.startswith("index 2: purchase: 3 problems\n")


def test_validate_reports_lines_that_are_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("validate", jsonl(tmp_path / "e.jsonl", VIEW, '{"event": "search",')) == 1
    out = capsys.readouterr().out
    assert out.startswith("line 2: 1 problem\n    not valid JSON: ")
    assert out.endswith("1 events checked, 1 valid, 0 invalid, 1 unreadable (not valid JSON)\n")


def test_validate_checks_tokens_only_against_a_given_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = {"event": "search", "properties": {"distinct_id": "a", "search_term": "x", "token": "other"}}
    path = jsonl(tmp_path / "e.jsonl", other, VIEW)
    assert run("validate", path) == 0
    assert run("validate", "--namespace", "bluestore", path) == 1
    assert "line 1: search: 1 problem\n    properties.token: does not match" in capsys.readouterr().out


def test_validate_json_output_has_one_object_per_invalid_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run("validate", "--json", jsonl(tmp_path / "e.jsonl", BAD, VIEW, BAD))
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["line"], r["event"], len(r["problems"])) for r in records] == [(1, "purchase", 3), (3, "purchase", 3)]


def test_validate_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("validate", str(tmp_path / "missing.jsonl")) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "sandbox"])
@pytest.mark.parametrize("size", ["-1", "0"])
def test_max_event_bytes_below_one_is_a_usage_error(command: str, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run(command, "--max-event-bytes", size, *(["-"] if command == "validate" else []))
    assert exited.value.code == 2
    assert f"argument --max-event-bytes: '{size}' must be at least 1" in capsys.readouterr().err


def test_validate_and_sandbox_never_import_airflow(tmp_path: Path) -> None:
    code = (
        "import sys; from airflow_provider_bluecore.cli import main, build_parser; build_parser();"
        f"import airflow_provider_bluecore.sandbox.server; main(['validate', {jsonl(tmp_path / 'e.jsonl', VIEW)!r}]);"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"


class _CountingStream(io.RawIOBase):
    """A binary stream that counts how many bytes were read from it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.consumed = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.data[self.consumed : self.consumed + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.consumed += len(chunk)
        return len(chunk)


@pytest.mark.parametrize("as_array", [False, True])
def test_event_files_are_read_as_a_stream(as_array: bool) -> None:
    events = [view(i) for i in range(50_000)]  # about 4 MB
    data = json.dumps(events) if as_array else "\n".join(json.dumps(e) for e in events)
    stream = _CountingStream(data.encode())
    first = next(iter(EventFile(io.BufferedReader(stream), "events")))
    assert first.event == events[0]
    assert stream.consumed < 300_000


def test_array_reader_parses_values_cut_by_chunk_boundaries() -> None:
    events: list[Any] = [view(i) | {"pad": "x" * (i * 997 % 70_000)} for i in range(40)] + [12345678901234567890, [], {}]
    data = json.dumps(events, indent=1).encode()
    parsed = [e.event for e in EventFile(io.BufferedReader(_CountingStream(data)), "events")]
    assert parsed == events


def test_send_delivers_through_an_airflow_connection_and_reports_by_line(sandbox: SandboxServer, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "e.jsonl", VIEW, "", BAD, view(2), "{oops")
    result = subprocess.run([BLUECORE, "send", path, "--conn-id", "sandbox_test"], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("line 3: rejected: properties.products: is required for purchase events;")
    assert lines[1].startswith("line 5: unreadable: not valid JSON")
    assert "delivered 2 answered 2xx" in [" ".join(line.split()) for line in lines]
    assert "\r" not in result.stderr  # not a terminal: no progress bar drawn in place
    assert sorted(e["distinct_id"] for e in requests.get(sandbox.url + "/api/events", timeout=10).json()["events"]) == [
        "c2",
        "jane@example.com",
    ]


def test_send_exits_0_and_prints_the_report_as_json(sandbox: SandboxServer, tmp_path: Path, capsys: Any) -> None:
    assert run("send", jsonl(tmp_path / "e.jsonl", *[view(i) for i in range(30)]), "--conn-id", "sandbox_test", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["report"]["seen"], summary["report"]["sent"], summary["unreadable"]) == (30, 30, 0)


def test_send_stops_reading_beyond_max_rejected(sandbox: SandboxServer, tmp_path: Path, capsys: Any) -> None:
    path = jsonl(tmp_path / "e.jsonl", *([BAD] * 200), VIEW)
    assert run("send", path, "--conn-id", "sandbox_test", "--max-rejected", "3", "--show", "1") == 1
    out = capsys.readouterr().out
    assert "Stopped early: " in out
    assert "... further rejected/failed events are only counted (--show 1)" in out


def test_send_with_an_unknown_connection_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("send", jsonl(tmp_path / "e.jsonl", VIEW), "--conn-id", "no_such_connection") == 2
    assert "cannot load connection 'no_such_connection'" in capsys.readouterr().err


def test_send_draws_a_progress_bar_on_a_terminal(sandbox: SandboxServer, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "e.jsonl", *[view(i) for i in range(200)])
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [BLUECORE, "send", path, "--conn-id", "sandbox_test"], stdout=subprocess.PIPE, stderr=terminal, env=os.environ.copy()
    )
    os.close(terminal)
    stdout = process.communicate(timeout=120)[0].decode()
    drawn = b""
    while chunk := _read_pty(controller):
        drawn += chunk
    os.close(controller)
    assert process.returncode == 0
    assert b"\r\x1b[K100% [########################] 200 sent" in drawn
    assert "delivered 200 answered 2xx" in " ".join(stdout.split())


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO once the other side is closed
        return b""


def test_sandbox_command_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [BLUECORE, "sandbox", "--port", "0", "--namespace", "bluestore"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().split()[-1]
    accepted = requests.post(
        url + "/api/track/mobile/v1", json=VIEW | {"properties": {**VIEW["properties"], "token": "bluestore"}}
    )
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=30)[0]
    assert accepted.status_code == 202
    assert process.returncode == 0
    assert rest.splitlines()[-1] == "Stopped: 1 events accepted, 0 rejected."


@pytest.mark.parametrize("flag", [["--error-rate", "1.5"], ["--drop-rate", "ten"], ["--port", "-1"]])
def test_sandbox_refuses_bad_settings_as_usage_errors(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("sandbox", *flag)
    assert exit_info.value.code == 2
    assert f"argument {flag[0]}" in capsys.readouterr().err


def test_sandbox_refuses_fault_shares_above_one_in_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("sandbox", "--error-rate", "60%", "--drop-rate", "0.6") == 2
    assert "must not exceed 1" in capsys.readouterr().err


def test_command_modules_extend_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (tmp_path / "bluecore_hello.py").write_text(
        "from airflow_provider_bluecore.cli import CommandError, add_command\n"
        "def add_parser(subparsers):\n"
        "    p = add_command(subparsers, 'hello', help='greet', description='Greets.', examples=['bluecore hello x'])\n"
        "    p.add_argument('name')\n"
        "    p.set_defaults(handler=run)\n"
        "def run(args):\n"
        "    if args.name == 'nobody':\n"
        "        raise CommandError('nobody to greet')\n"
        "    print('hello', args.name)\n"
        "    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "bluecore_hello"))
    assert (run("hello", "jane"), run("hello", "nobody")) == (0, 2)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("hello jane\n", "bluecore hello: error: nobody to greet\n")
