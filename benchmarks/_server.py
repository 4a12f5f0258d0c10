"""A minimal, fast HTTP/1.1 server on 127.0.0.1 for the benchmarks (a stand-in for the Events API).

Run as ``python -m benchmarks._server [--delay SECONDS]``: it prints its port on the first line of stdout, then answers every
POST with ``202`` (after ``delay`` seconds, without blocking other connections) on keep-alive connections. ``GET /count``
answers the number of POSTs received so far, so a benchmark can check that everything arrived. Plain asyncio protocol code, so
the server costs far less CPU per request than the clients it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

_ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status": "ok"}'


class _Counter:
    posts = 0


class _Protocol(asyncio.Protocol):
    def __init__(self, delay: float, counter: _Counter) -> None:
        self.delay = delay
        self.counter = counter
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            if head.startswith(b"get"):
                body = str(self.counter.posts).encode()
                self._write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            self.counter.posts += 1
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._write, _ACCEPTED)
            else:
                self._write(_ACCEPTED)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def _serve(delay: float) -> None:
    counter = _Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(delay, counter), "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering each POST")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.delay))
    except KeyboardInterrupt:
        sys.exit(0)


@contextmanager
def running_server(delay: float = 0.0) -> Iterator[str]:
    """Start the server in a subprocess (its own CPU, its own GIL); yield its base URL; stop it afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server", "--delay", str(delay)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def posts_received(base_url: str) -> int:
    """How many POSTs the server has answered so far."""
    with urllib.request.urlopen(f"{base_url}/count", timeout=5) as response:
        return int(response.read())


if __name__ == "__main__":
    main()
