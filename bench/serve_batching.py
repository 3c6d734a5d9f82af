"""Micro-batching in `meddx serve`: the same package served twice, batching on (the default: --max-batch 32,
--batch-wait-ms 5) and off (--no-batching), measured in one run at 1, 8 and 32 concurrent clients. Each repeat runs
every (clients, on/off) pair, pairs and the order within each pair shuffled; the table gives the median and the range
over the repeats. Goal: at 32 clients at least 2x the throughput, with p99 latency at most 2x the unbatched p50.

    .venv/bin/python bench/serve_batching.py [--requests 320] [--repeats 3] [--models small_cnn,resnet18]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402
from serve import MODELS, start, train_package, upload_png  # noqa: E402

LEVELS = (1, 8, 32)
MODES = {"on": (), "off": ("--no-batching",)}


async def load(url: str, data: bytes, n: int, clients: int) -> dict:
    """n requests by `clients` concurrent clients (aiohttp: httpx's own overhead caps 32 clients near 150 req/s on
    2 cores, under what the server answers); throughput, latency p50/p99, errors."""
    latencies, errors, left = [], 0, [n]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal errors
            while left[0] > 0:
                left[0] -= 1
                form = aiohttp.FormData()
                form.add_field("file", data, filename="x.png", content_type="image/png")
                t = time.perf_counter()
                async with session.post(url + "/predict", data=form) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rps": n / wall, "errors": errors, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def measure(urls: dict[str, str], data: bytes, requests: int, repeats: int, seed: int) -> dict:
    """{(clients, mode): [load() result per repeat]}, each repeat's pairs and their order shuffled."""
    rng, out = random.Random(seed), {}
    for r in range(repeats):
        pairs = list(LEVELS)
        rng.shuffle(pairs)
        for clients in pairs:
            modes = list(MODES)
            rng.shuffle(modes)
            for mode in modes:
                n = requests // 4 if clients == 1 else requests  # one client: fewer requests, the same seconds
                result = asyncio.run(load(urls[mode], data, n, clients))
                assert result["errors"] == 0, result
                out.setdefault((clients, mode), []).append(result)
                print(f"repeat {r + 1}: {clients} clients, batching {mode}: {result['rps']:.1f} req/s, "
                      f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms", flush=True)  # fmt: skip
    return out


def summary(results: list[dict], key: str) -> str:
    """Median (min-max) of one figure over the repeats."""
    v = np.array([r[key] for r in results])
    return f"{np.median(v):.1f} ({v.min():.1f}-{v.max():.1f})"


def model_call_ms(package: Path) -> tuple[float, float]:
    """The ONNX model call alone, in this process with the service's thread settings: ms at batch 1, and ms per image
    at batch 32 (the most batching can save if the model call were all the work)."""
    from meddx.serve.predictor import Predictor

    predictor = Predictor(package, "onnx", workers=2)
    x = predictor.prepare(upload_png()).x.numpy()
    out = []
    for batch, n in ((1, 40), (32, 4)):
        xs = np.repeat(x, batch, 0)
        predictor.probabilities(xs)
        t = time.perf_counter()
        for _ in range(n):
            predictor.probabilities(xs)
        out.append((time.perf_counter() - t) / n / batch * 1000)
    return out[0], out[1]


def run_model(label: str, spec: tuple, data: bytes, args, tmp: Path) -> tuple[list[str], list[str]]:
    """Table rows and the goal line of one model."""
    model, size, epochs, batches = spec
    package = train_package(model, size, epochs, batches, tmp / model)
    alone, batched = model_call_ms(package)
    servers = {mode: start(package, "onnx", *options) for mode, options in MODES.items()}
    try:
        urls = {mode: url for mode, (_, url) in servers.items()}
        for url in urls.values():
            asyncio.run(load(url, data, 64, 8))  # warm-up
        results = measure(urls, data, args.requests, args.repeats, args.seed)
        stats = httpx.get(urls["on"] + "/health").json()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    rows = []
    for clients in LEVELS:
        on, off = results[(clients, "on")], results[(clients, "off")]
        ratio = [a["rps"] / b["rps"] for a, b in zip(on, off)]
        for mode, res in (("on", on), ("off", off)):
            rows.append(f"| {label} | {clients} | {mode} | {summary(res, 'rps')} | {summary(res, 'p50')} | "
                        f"{summary(res, 'p99')} | {f'{np.median(ratio):.2f}x' if mode == 'on' else ''} |")  # fmt: skip
    on32, off32 = results[(32, "on")], results[(32, "off")]
    gain = float(np.median([a["rps"] / b["rps"] for a, b in zip(on32, off32)]))
    p99, p50 = float(np.median([r["p99"] for r in on32])), float(np.median([r["p50"] for r in off32]))
    met = gain >= 2 and p99 <= 2 * p50
    b = stats["batching"]
    goal = (
        f"- {label}: at 32 clients batching gives **{gain:.2f}x** the throughput (goal 2x); batched p99 {p99:.1f} ms "
        f"against 2x the unbatched p50, {2 * p50:.1f} ms: goal **{'met' if met else 'not met'}**. The batched server "
        f"answered {b['requests']:.0f} requests in {b['model_calls']:.0f} model calls (mean batch "
        f"{b['requests'] / max(1, b['model_calls']):.1f}); ONNX Runtime threads {stats['threads']}. The model call alone: "
        f"{alone:.2f} ms at batch 1, {batched:.2f} ms per image at batch 32."
    )
    print(goal, flush=True)
    return rows, [goal]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="small_cnn,resnet18")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data, started, rows, goals, load_before = upload_png(), time.time(), [], [], os.getloadavg()[0]
    chosen = [(label, spec) for label, spec in MODELS.items() if spec[0] in args.models.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in chosen:
            r, g = run_model(label, spec, data, args, Path(tmp))
            rows, goals = rows + r, goals + g
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores, by "
        f"`.venv/bin/python bench/serve_batching.py --requests {args.requests} --repeats {args.repeats} --models "
        f"{args.models}` (one run, {time.time() - started:.0f} s). The packages of `bench/serve.py` (trained briefly "
        "on the bundled PneumoniaMNIST), each served twice at once by `meddx serve` (ONNX Runtime, 2 request "
        "threads): batching on (`--max-batch 32 --batch-wait-ms 5`, the defaults) and off (`--no-batching`). Each "
        f"client sends its next request when its answer arrives; {args.requests} requests per cell ({args.requests // 4} "
        f"at one client). Each of {args.repeats} repeats runs every (clients, on/off) pair, pairs and their order "
        "shuffled; figures are the median (min-max) over the repeats, the ratio the median of the repeats' on/off "
        "throughput ratios. Upload: one 28 px PNG. The load generator (aiohttp, one Python process) shares the cores "
        f"with the server; the machine's 1-minute load average was {load_before:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (other work shares it). httpx, as in `bench/serve_load.py`, is itself the limit at 32 clients (about 150 req/s "
        "against aiohttp's 400 to 600 on the small CNN, p99 over 1 s), so it is not used here.",
        "",
        "| model | clients | batching | throughput (req/s) | p50 (ms) | p99 (ms) | on / off throughput |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *goals,
        "",
        "Batching saves only on the model call; decoding, the domain check, HTTP and the load generator stay per "
        "request, so the gain is bounded by the model call's share of a request (the model call alone, above), "
        "and on 2 shared cores that share is small.",
    ]
    body = "\n".join(lines)
    print(body)
    print(f"wrote {write_section('serve-batching', 'Serving: micro-batching on and off, 1 to 32 clients', body)}")


if __name__ == "__main__":
    main()
