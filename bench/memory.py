"""Peak resident memory per process with 1, 2 and 4 processes (`torchrun`, gloo) on a data set whose decoded images are
larger than a quarter of this machine's RAM: the Kermany folder decoded at 512 px (6.1 GB as float32).

Each process records its own peak RSS (getrusage) when it exits; the decoded-image cache is built by the first run
(timed apart) and mapped by every later one. Training is cut to a few batches: memory, not accuracy, is measured.

    .venv/bin/python bench/memory.py [--size 512] [--processes 1 2 4] [--batches 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("MEDDX_DATA_DIR", HERE.parents[1] / "shared" / "data")) / "chest_xray_pneumonia_224"
ENTRY = """import os, resource, sys
from meddx.cli import main
try:
    main()
finally:
    rank = os.environ.get("RANK", "0")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    open(os.path.join(os.environ["RSS_DIR"], f"rank{rank}.txt"), "w").write(str(peak))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes: int, args, out: Path, name: str) -> dict:
    """One training launch; every rank's peak RSS in GB and the wall time."""
    rss = out / f"rss-{name}"
    rss.mkdir()
    entry = out / "entry.py"
    entry.write_text(ENTRY)
    train = ["train", "--data", str(DATA), "--epochs", "1", "--accelerator", "cpu", "--output-dir", str(out / "runs"),
             "--name", name, "--set", "plan.enabled=false", "--set", "train.progress_bar=false",
             "--set", f"data.image_size={args.size}", "--set", "data.channels=1", "--set", "train.batch_size=16",
             "--set", f"train.limit_train_batches={args.batches}", "--set", "evaluate.bootstrap=100",
             "--set", "train.diagnostics=false"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port",
           str(_free_port()), str(entry), *train]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "RSS_DIR": str(rss)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    peaks = [int(p.read_text()) / 1024**2 for p in sorted(rss.iterdir())]  # ru_maxrss is in KiB on Linux
    return {"peaks_gb": peaks, "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        os.environ["MEDDX_CACHE_DIR"] = str(out / "cache")
        build = run(1, args, out, "build")  # the first run decodes into the cache
        order = args.processes[:]
        random.Random(0).shuffle(order)
        rows = {p: run(p, args, out, f"p{p}") for p in order}
        decoded_gb = sum(f.stat().st_size for f in (out / "cache").glob("*.npy")) / 1024**3
    write(rows, build, decoded_gb, ram, args)


def write(rows: dict, build: dict, decoded_gb: float, ram: float, args) -> None:
    lines = [
        f"| {p} | {max(r['peaks_gb']):.2f} | {np.median(r['peaks_gb']):.2f} | {sum(r['peaks_gb']):.2f} | "
        f"{r['seconds']:.0f} |"
        for p, r in sorted(rows.items())
    ]
    body = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()} with {os.cpu_count()} cores and {ram:.0f} GiB of RAM,
by `.venv/bin/python bench/memory.py --size {args.size} --processes {" ".join(map(str, args.processes))} --batches {args.batches}`.
The Kermany folder decoded at {args.size} px, grey: {decoded_gb:.1f} GiB as float32 (over a quarter of RAM). Each
launch is `torchrun --nproc-per-node P`, one epoch cut to {args.batches} batches of 16 per process, then val and test
predicted and evaluated; launches in a random order after one that built the cache ({build["seconds"]:.0f} s, peak
{max(build["peaks_gb"]):.2f} GiB).

| processes | peak RSS of the largest process (GiB) | median process (GiB) | sum over processes (GiB) | seconds |
|---|---|---|---|---|
{chr(10).join(lines)}

- RSS counts the pages of the mapped cache file a process touched; the OS holds them once for all processes (the
  page cache), so the sum over processes overstates the machine's use.
"""
    print(body)
    print(
        f"wrote {write_section('memory', 'Memory per process: 1, 2 and 4 processes on a set larger than RAM/4', body)}"
    )


if __name__ == "__main__":
    main()
