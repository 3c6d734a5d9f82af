"""A slow or half-open client cannot hold the service: whoever has not sent a whole request within the read timeout
gets 408 and is closed, while others are answered meanwhile (meddx.serve.protocol)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from fastapi import FastAPI, Request

from meddx.serve.protocol import with_read_timeout

from conftest import need, run_cli, wait_for_health


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


def _cut_after(port: int, first: bytes) -> bytes:
    """Send `first`, then stall; what the server sent before it closed the connection (a server that never cuts the
    client leaves it waiting until the socket's own 20 s timeout, which fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(first)
        return _read_all(s)


@pytest.mark.parametrize(
    "first",
    [
        b"",  # connects and says nothing
        b"POST /echo HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",  # body stops at 10 of 100 bytes
    ],
)
def test_a_stalled_request_gets_408_and_its_connection_back(server, first):
    assert _cut_after(server, first).startswith(b"HTTP/1.1 408")


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


def test_a_client_trickling_bytes_is_cut_at_the_deadline(server):
    """Slowloris: a header byte every 0.1 s never stalls long, yet the whole request must arrive within the timeout."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server), timeout=20) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(100):  # 10 s of trickling unless cut
                s.sendall(b"X")
                sent += 1
                time.sleep(0.1)
        except OSError:  # the server closed: broken pipe or reset
            pass
        s.settimeout(5)
        try:
            got = _read_all(s)
        except TimeoutError:
            got = b"(no answer)"  # the server kept the connection: what the read timeout must prevent
        except OSError:
            got = b"(reset)"
    assert sent < 100 and (got.startswith(b"HTTP/1.1 408") or got == b"(reset)"), (sent, got[:80])


@pytest.mark.slow
def test_meddx_serve_cuts_stalled_clients_and_answers_a_prediction_meanwhile(datscan_run, data_dir, tmp_path):
    """`meddx serve PACKAGE --read-timeout 1` as a user starts it: stalled clients get 408, a scan is predicted."""
    import httpx

    from meddx.export import export_run

    package = export_run(datscan_run, "onnx", tmp_path / "package")
    scan = sorted((need(data_dir, "datscan_spect_ppmi_2d") / "train" / "PD").iterdir())[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "meddx", "serve", str(package), "--port", str(port), "--read-timeout", "1"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stalled: list[socket.socket] = []
    try:
        wait_for_health(port, server)
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=8) for _ in range(20)]
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        for s in stalled:  # a multipart upload that stops after its first bytes
            s.sendall(head + b"Content-Length: 5000\r\n\r\n--b\r\nContent-Disposition: form-data; name=")
        r = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": (scan.name, scan.read_bytes())}, timeout=30)
        assert r.status_code == 200 and "probabilities" in r.json(), r.text
        answers = [_read_all(s) for s in stalled]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    finally:
        for s in stalled:
            s.close()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_read_timeout_of_zero_is_refused(tmp_path):
    """0 s would answer every connection 408 before its first byte."""
    proc = run_cli("serve", str(tmp_path), "--read-timeout", "0")
    assert proc.returncode == 2 and "--read-timeout" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_prediction_timeout_of_zero_or_less_is_refused(tmp_path, value):
    """`--timeout 0` or below answered every prediction 504; it is refused like `--read-timeout 0`."""
    proc = run_cli("serve", str(tmp_path), "--timeout", value)
    assert proc.returncode == 2 and "--timeout" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
