"""Serving speed: the same model package behind `meddx serve` with the ONNX Runtime backend and the PyTorch backend,
measured in one run on loopback: single-image latency (p50/p99, one request at a time) and throughput under a
bounded concurrent load. Rounds alternate between the backends so machine drift hits both alike.

    .venv/bin/python bench/serve.py [--requests 200] [--concurrency 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import meddx
from meddx.data.readers import bundled_path
from meddx.export import export_run

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

MODELS = {  # name: (model, image size, epochs, batches per epoch): the demo CNN, and a ResNet-18 at 128 px
    "small_cnn, 28 px": ("small_cnn", 28, 2, None),
    "resnet18, 128 px": ("resnet18", 128, 1, 20),
}


def train_package(model: str, size: int, epochs: int, batches: int | None, out: Path) -> Path:
    run = meddx.train(
        {
            "name": model,
            "output_dir": str(out),
            "data": {"path": "pneumoniamnist", "image_size": size},
            "split": {"on_duplicate_images": "drop_from_train"},
            "model": {"name": model},
            "train": {"max_epochs": epochs, "progress_bar": False, "limit_train_batches": batches},
            "evaluate": {"bootstrap": 0},
        }
    )
    return export_run(run, "onnx")


def upload_png() -> bytes:
    """One real test image of the bundled PneumoniaMNIST, as a PNG file."""
    images = np.load(bundled_path("pneumoniamnist"))["test_images"]
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, format="PNG")
    return buf.getvalue()


def start(package: Path, backend: str, *options: str) -> tuple[subprocess.Popen, str]:
    """`meddx serve` on a free loopback port with the given extra options, once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "meddx", "serve", str(package), "--backend", backend, "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"meddx serve ({backend}) did not start")


def latency(url: str, data: bytes, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=60) as c:
        for _ in range(n):
            t = time.perf_counter()
            r = c.post(url + "/predict", files={"file": ("x.png", data, "image/png")})
            out.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return out


async def throughput(url: str, data: bytes, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def one():
            async with sem:
                r = await c.post(url + "/predict", files={"file": ("x.png", data, "image/png")})
                assert r.status_code == 200, r.text

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    data = upload_png()
    rows, started = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for label, (model, size, epochs, batches) in MODELS.items():
            package = train_package(model, size, epochs, batches, Path(tmp) / model)
            servers = {b: start(package, b) for b in ("onnx", "pytorch")}
            lat: dict[str, list[float]] = {b: [] for b in servers}
            thr: dict[str, list[float]] = {b: [] for b in servers}
            try:
                for _, url in servers.values():
                    latency(url, data, 20)  # warm-up
                for r in range(args.rounds):
                    for b in ("onnx", "pytorch") if r % 2 == 0 else ("pytorch", "onnx"):
                        lat[b] += latency(servers[b][1], data, args.requests // args.rounds)
                        thr[b].append(asyncio.run(throughput(servers[b][1], data, args.requests, args.concurrency)))
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(10)
            for b in ("onnx", "pytorch"):
                ms = np.array(lat[b]) * 1000
                rows.append((label, b, np.percentile(ms, 50), np.percentile(ms, 99), float(np.mean(thr[b]))))
            o, p = rows[-2], rows[-1]
            print(
                f"{label}: p50 {o[2]:.1f} vs {p[2]:.1f} ms; throughput {o[4]:.1f} vs {p[4]:.1f} req/s (onnx vs pytorch)"
            )
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPU cores, by "
        f"`.venv/bin/python bench/serve.py --requests {args.requests} --concurrency {args.concurrency} --rounds {args.rounds}` "
        f"(one run, {time.time() - started:.0f} s). Each model is trained briefly on the bundled PneumoniaMNIST "
        "(speed does not depend on accuracy), exported with `export_run(run, 'onnx')`, and the one package is served "
        "twice by `meddx serve --backend onnx|pytorch` (2 inference threads, uvicorn, loopback). Upload: one 28 px "
        "PNG test image; each request decodes, checks the input domain, resizes, normalises and predicts.",
        "",
        "| model | backend | latency p50 (ms) | latency p99 (ms) | throughput, "
        f"{args.concurrency} concurrent (req/s) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {b} | {p50:.1f} | {p99:.1f} | {t:.1f} |" for m, b, p50, p99, t in rows]
    lines.append("")
    for i in range(0, len(rows), 2):
        o, p = rows[i], rows[i + 1]
        lines.append(
            f"- {o[0]}: ONNX Runtime / PyTorch: p50 latency **{o[2] / p[2]:.2f}x**, throughput "
            f"**{o[4] / p[4]:.2f}x** (below 1 is faster for latency, above 1 is faster for throughput)."
        )
    table = "\n".join(lines)
    print(table)
    print(f"wrote {write_section('serve', 'Serving: ONNX Runtime against PyTorch behind meddx serve', table)}")


if __name__ == "__main__":
    main()
