"""Scaling on the CPU: one process against two (`torchrun --nproc-per-node 2`, gloo) with the same effective batch,
time per epoch and test ROC AUC, in one run.

Each pair runs both launches in a random order with the same seed; one process uses every core (torch's default
threads), each of the two gets half (torchrun's OMP_NUM_THREADS=1 on 2 cores).

    .venv/bin/python bench/scaling.py [--pairs 3] [--epochs 4] [--image-size 64] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
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
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, out: Path, name: str, args, seed: int) -> dict:
    """One training run; its seconds per epoch (training.json: train + val + checkpoint), wall time and test AUC."""
    per_process = args.batch_size // processes
    train = ["-m", "meddx", "train", "--data", "pneumoniamnist", "--epochs", str(args.epochs), "--accelerator", "cpu",
             "--output-dir", str(out), "--name", name, "--set", "plan.enabled=false", "--set", "train.progress_bar=false",
             "--set", f"data.image_size={args.image_size}", "--set", f"train.batch_size={per_process}",
             "--set", "train.patience=1000", "--set", f"train.seed={seed}",
             "--set", "split.on_duplicate_images=drop_from_train"]  # fmt: skip
    cmd = [sys.executable, *train]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port",
               str(_free_port()), *train]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    training = json.loads((out / name / "training.json").read_text())
    metrics = json.loads((out / name / "metrics.json").read_text())
    return {
        "epoch_s": training["seconds"] / training["epochs_run"],
        "wall_s": wall,
        "auc": metrics["model"]["macro"]["roc_auc"]["value"],
        "samples": training["train_samples_seen"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    order, rows = random.Random(0), []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.pairs):
            sides = [1, 2]
            order.shuffle(sides)
            got = {p: launch(p, Path(tmp), f"p{p}-{k}", args, seed=k) for p in sides}
            rows.append(got)
            print(f"pair {k} (first: {sides[0]} process(es)): {got}", flush=True)
    write(rows, args)


def write(rows: list[dict], args) -> None:
    speedups = np.array([r[1]["epoch_s"] / r[2]["epoch_s"] for r in rows])
    med = lambda p, k: float(np.median([r[p][k] for r in rows]))  # noqa: E731
    auc = lambda p: ", ".join(f"{r[p]['auc']:.3f}" for r in rows)  # noqa: E731
    body = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()} with {os.cpu_count()} cores, torch {torch.__version__},
by `.venv/bin/python bench/scaling.py --pairs {args.pairs} --epochs {args.epochs} --image-size {args.image_size} --batch-size {args.batch_size}`.
Bundled PneumoniaMNIST resized to {args.image_size} px, `small_cnn`, {args.epochs} epochs, effective batch {args.batch_size}
(1 x {args.batch_size} against 2 x {args.batch_size // 2}), the same seed within a pair, pairs in a random order.

| launch | seconds per epoch (median) | whole command (s) | training samples per run | test ROC AUC per pair |
|---|---|---|---|---|
| 1 process (`meddx train`) | {med(1, "epoch_s"):.1f} | {med(1, "wall_s"):.0f} | {rows[0][1]["samples"]} | {auc(1)} |
| 2 processes (`torchrun --nproc-per-node 2`, gloo) | {med(2, "epoch_s"):.1f} | {med(2, "wall_s"):.0f} | {rows[0][2]["samples"]} | {auc(2)} |

- Speed-up of an epoch, 1 process / 2 processes: **{np.median(speedups):.2f}x** median over {len(rows)} pairs
  ({", ".join(f"{s:.2f}" for s in speedups)}); an epoch includes validation and the checkpoint.
- The whole command adds each process's start (imports, reading and decoding the data) and the evaluation.
"""
    print(body)
    print(f"wrote {write_section('scaling-cpu', 'Scaling on the CPU: one process against two', body)}")


if __name__ == "__main__":
    main()
