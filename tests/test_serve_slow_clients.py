"""A slow or half-open client cannot hold the service: whoever has not sent a whole request within the read timeout
gets 408 and is closed, while others are answered meanwhile (meddx.serve.protocol)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from fastapi import FastAPI, Request

from meddx.serve.protocol import with_read_timeout


@pytest.fixture(scope="module")
def server():
    """A minimal app behind uvicorn with the read-timeout protocol (1 s), on a free loopback port."""
    import uvicorn

    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=with_read_timeout(1.0))
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(500):
        if srv.started:
            break
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(10)


def _read_all(s: socket.socket) -> bytes:
    got = b""
    while chunk := s.recv(4096):
        got += chunk
    return got


def _cut_after(port: int, first: bytes) -> tuple[float, bytes]:
    """Send `first`, then stall; seconds until the server closed the connection, and what it sent."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(first)
        got = _read_all(s)
    return time.perf_counter() - started, got


@pytest.mark.parametrize(
    "first",
    [
        b"",  # connects and says nothing
        b"POST /echo HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",  # body stops at 10 of 100 bytes
    ],
)
def test_a_stalled_request_gets_408_and_its_connection_back(server, first):
    seconds, got = _cut_after(server, first)
    assert got.startswith(b"HTTP/1.1 408") and 0.9 < seconds < 10


def test_others_are_answered_while_slow_clients_wait(server):
    stalled = [socket.create_connection(("127.0.0.1", server)) for _ in range(20)]
    for s in stalled:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
    try:
        with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_all(s).startswith(b"HTTP/1.1 200")
        # a whole request that takes its time, but less than the timeout, is served; so is a slow inference later on
        with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nab")
            time.sleep(0.4)
            s.sendall(b"cd")
            assert b'{"bytes":4}' in _read_all(s)
    finally:
        for s in stalled:
            s.close()
