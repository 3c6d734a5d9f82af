"""Peak memory per process with 1, 2 and 4 processes (`torchrun`, gloo) on a data set whose decoded images are larger
than a quarter of this machine's RAM: the Kermany training folder (5,216 JPEGs) decoded at 576 px, 6.4 GiB as float32.

Each process records its peak RSS (getrusage: its own memory plus the pages of the mapped cache it touched, which the
OS shares between processes) and the peak of its own memory alone (RssAnon, sampled every 50 ms). The decoded-image
cache is built by a first run (timed apart) and mapped by every later one. Training is cut to a few batches and val
and test to 64 images each (manifests written for the run, every file its own patient): memory, not accuracy.

    .venv/bin/python bench/memory.py [--size 576] [--processes 1 2 4] [--batches 4]
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

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("MEDDX_DATA_DIR", HERE.parents[1] / "shared" / "data")) / "chest_xray_pneumonia_224"
ENTRY = """import os, resource, threading, time
from meddx.cli import main
peak_anon = [0]
def watch():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
try:
    main()
finally:
    rank = os.environ.get("RANK", "0")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    open(os.path.join(os.environ["RSS_DIR"], f"rank{rank}.txt"), "w").write(f"{peak} {peak_anon[0]}")
"""


def manifests(out: Path) -> list[str]:
    """--data options: train (all but 128 images), val and test (64 each), every file its own patient."""
    files = sorted(DATA.glob("*/*/*.jpeg"))
    random.Random(0).shuffle(files)
    parts = {"test": files[:64], "val": files[64:128], "train": files[128:]}
    options = []
    for split, chosen in parts.items():
        rows = [f"{f},{f.parent.name},{f.stem}" for f in chosen]
        (out / f"{split}.csv").write_text("path,label,patient\n" + "\n".join(rows) + "\n")
        options += ["--data", f"{split}={out / f'{split}.csv'}"]
    return options


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
    train = ["train", *manifests(out), "--set", "data.label_column=label", "--set", "data.patient_column=patient",
             "--set", "data.image_column=path", "--set", "data.allow_outside_root=true", "--epochs", "1", "--accelerator", "cpu", "--output-dir", str(out / "runs"),
             "--name", name, "--set", "plan.enabled=false", "--set", "train.progress_bar=false",
             "--set", f"data.image_size={args.size}", "--set", "data.channels=1", "--set", "train.batch_size=2",
             "--set", f"train.limit_train_batches={args.batches}", "--set", "evaluate.bootstrap=100",
             "--set", "train.diagnostics=false"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port",
           str(_free_port()), str(entry), *train]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "RSS_DIR": str(rss)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    figures = [[int(v) / 1024**2 for v in p.read_text().split()] for p in sorted(rss.iterdir())]  # KiB -> GiB
    return {
        "peaks_gb": [f[0] for f in figures],
        "own_gb": [f[1] for f in figures],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=576)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--batches", type=int, default=4)
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
        f"| {p} | {max(r['own_gb']):.2f} | {max(r['peaks_gb']):.2f} | {sum(r['own_gb']):.2f} | {r['seconds']:.0f} |"
        for p, r in sorted(rows.items())
    ]
    body = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()} with {os.cpu_count()} cores and {ram:.1f} GiB of RAM,
by `.venv/bin/python bench/memory.py --size {args.size} --processes {" ".join(map(str, args.processes))} --batches {args.batches}`.
The Kermany training folder decoded at {args.size} px, grey: {decoded_gb:.1f} GiB as float32 (a quarter of RAM is
{ram / 4:.1f} GiB). Each launch is `torchrun --nproc-per-node P`: one epoch cut to {args.batches} batches of 2 per
process, val and test (64 images each) predicted and evaluated; launches in a random order after one that built the
cache ({build["seconds"]:.0f} s; its process peaked at {max(build["own_gb"]):.2f} GiB of its own memory).

| processes | own memory, largest process (GiB) | RSS with mapped cache pages, largest (GiB) | own memory, all processes (GiB) | seconds |
|---|---|---|---|---|
{chr(10).join(lines)}

- Own memory is RssAnon (what a process holds privately); RSS adds the pages of the mapped cache file it touched,
  which the OS keeps once for every process on the machine and can drop and re-read at any time.
"""
    print(body)
    print(
        f"wrote {write_section('memory', 'Memory per process: 1, 2 and 4 processes on a set larger than RAM/4', body)}"
    )


if __name__ == "__main__":
    main()
