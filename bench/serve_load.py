"""A bounded load test of `meddx serve` on loopback: a fixed number of requests at 1, 16 and 64 concurrent clients
(and with Grad-CAM), each stopping by itself; throughput, latency p50/p95/p99, errors, and the server's resident
memory before and after each level. The peer is the same server with one client at a time (throughput ratio). Then
SIGTERM in the middle of a 64-client burst: the requests already accepted must finish.

    .venv/bin/python bench/serve_load.py [--requests 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402
from serve import start, train_package, upload_png  # noqa: E402


def rss_mb(pid: int) -> float:
    """The process's resident memory (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, data: bytes, n: int, clients: int, query: str = "") -> dict:
    """n requests by `clients` concurrent clients; latencies, errors, wall time."""
    latencies, errors = [], 0
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(n):
        queue.put_nowait(None)

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            t = time.perf_counter()
            try:
                r = await c.post(url + "/predict" + query, files={"file": ("x.png", data, "image/png")})
                errors += r.status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"n": n, "clients": clients, "rps": n / wall, "errors": errors,
            **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}}  # fmt: skip


async def sigterm_burst(proc, url: str, data: bytes, clients: int) -> dict:
    """`clients` requests at once; SIGTERM once the server holds them; how many finished with 200."""
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as c:
        tasks = [asyncio.create_task(c.post(url + "/predict", files={"file": ("x.png", data, "image/png")}))
                 for _ in range(clients)]  # fmt: skip
        await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(not isinstance(r, Exception) and r.status_code == 200 for r in results)
    return {"sent": clients, "ok": ok, "exit": proc.wait(30)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=600)
    args = ap.parse_args()
    data, rows, started = upload_png(), [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        package = train_package("small_cnn", 28, 2, None, Path(tmp) / "small_cnn")
        proc, url = start(package, "onnx")
        try:
            asyncio.run(load(url, data, 50, 4))  # warm-up
            asyncio.run(load(url, data, 4, 1, "?cam=true"))  # the first Grad-CAM loads the PyTorch weights once
            plan = [(1, "", args.requests // 3), (16, "", args.requests), (64, "", args.requests),
                    (16, "?cam=true", args.requests // 3), (16, "?cam=true", args.requests // 3)]  # fmt: skip
            for clients, query, n in plan:
                before = rss_mb(proc.pid)
                result = asyncio.run(load(url, data, n, clients, query))
                rows.append({**result, "query": query or "-", "rss_before": before, "rss_after": rss_mb(proc.pid)})
                print(rows[-1], flush=True)
            term = asyncio.run(sigterm_burst(proc, url, data, 64))
        finally:
            if proc.poll() is None:
                proc.kill()
    base = rows[0]["rps"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPU cores, by "
        f"`.venv/bin/python bench/serve_load.py --requests {args.requests}` (one run, {time.time() - started:.0f} s). "
        "The small CNN package of `bench/serve.py` (28 px, ONNX Runtime backend, 2 inference threads) behind "
        "`meddx serve` on loopback; each client sends the next request when its answer arrives, until the fixed "
        "count is done. Peer: the same server with one client (throughput ratio). The load generator (httpx, "
        "one Python process) shares the 2 cores with the server, so the 64-client row measures both.",
        "",
        "| clients | query | requests | errors | throughput (req/s) | vs 1 client | p50 (ms) | p95 (ms) | p99 (ms) "
        "| server RSS before / after (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['clients']} | {r['query']} | {r['n']} | {r['errors']} | {r['rps']:.1f} | {r['rps'] / base:.2f} | "
            f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['rss_before']:.0f} / {r['rss_after']:.0f} |"
            for r in rows
        ],  # fmt: skip
        "",
        f"SIGTERM 0.1 s into a burst of {term['sent']} simultaneous requests: {term['ok']} answered 200, the server "
        f"exited with code {term['exit']} (uvicorn finishes the requests it holds, then re-raises the signal). The "
        "four Grad-CAM requests before the table load the PyTorch weights and grad-cam once (about 300 MB); the two "
        "Grad-CAM rows show whether memory then stays flat.",
    ]
    body = "\n".join(lines)
    print(body)
    print(f"wrote {write_section('serve-load', 'Serving under load: 1, 16 and 64 clients, and SIGTERM', body)}")


if __name__ == "__main__":
    main()
