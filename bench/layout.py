"""Memory layout on the CPU: a meddx training batch in NHWC (channels_last) against the same batch in NCHW (the peer,
PyTorch's default), on the shared image sets at the sizes and batches the plan chooses for them; then one whole
`meddx.train` each way (wall time and test AUC, which the layout must not change beyond noise).

Each repeat times both layouts with the plan's own layout pilot (`time_layouts`: a training step on one real batch,
NCHW and NHWC taking turns for 7 rounds, the median of each); the figure is the ratio NCHW / NHWC per repeat (above
1: NHWC faster), median and interquartile range over the repeats.

    .venv/bin/python bench/layout.py [--pairs 7] [--whole-pairs 3] [--whole-epochs 4]
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import meddx
from meddx.config import as_config
from meddx.training.datamodule import RunDataModule
from meddx.training.pilot import time_layouts

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402
from plan import SETS  # noqa: E402

CASES = [  # set, model, image size, batch: what the plan chose for the set (docs/benchmarks.md, the plan's tables)
    ("pneumoniamnist", "small_cnn", 28, 128),
    ("breastmnist", "small_cnn", 28, 16),
    ("nih64", "small_cnn", 64, 16),
    ("kermany", "small_cnn", 64, 128),
    ("nih64", "resnet18", 64, 16),
    ("kermany", "resnet18", 128, 32),
]


def case_config(set_name: str, model: str, size: int, batch: int, out: str, channels_last: bool = False):
    data = {**SETS[set_name][0], "image_size": size, "channels": 1}
    return as_config({"name": "layout", "output_dir": out, "data": data, "model": {"name": model},
                      "plan": {"enabled": False}, "evaluate": {"bootstrap": 0},
                      "train": {"batch_size": batch, "channels_last": channels_last, "progress_bar": False}})  # fmt: skip


def time_case(case: tuple, pairs: int, out: str) -> dict:
    """Per repeat, the layout pilot's seconds per training step in each layout, on one decoded data module."""
    data = RunDataModule(case_config(*case, out))
    data.setup()
    timed = [time_layouts(data.cfg, data) for _ in range(pairs)]
    nchw, nhwc = np.array([t["nchw"] for t in timed]), np.array([t["nhwc"] for t in timed])
    return {"case": case, "nchw": nchw.tolist(), "nhwc": nhwc.tolist(), "ratios": (nchw / nhwc).tolist()}


def whole_runs(pairs: int, epochs: int, order: random.Random, out: str) -> list[dict]:
    """`meddx.train` on PneumoniaMNIST (small CNN, 28 px, plan off, `epochs` epochs, no early stop) each way."""
    rows = []
    for k in range(pairs):
        sides = [False, True]
        order.shuffle(sides)
        row = {}
        for cl in sides:
            cfg = case_config("pneumoniamnist", "small_cnn", 28, 128, out, cl)
            cfg.name, cfg.train.max_epochs, cfg.train.patience, cfg.train.seed = f"w{k}-{cl}", epochs, 1000, k
            started = time.perf_counter()
            run = meddx.train(cfg)
            row[cl] = {"s": time.perf_counter() - started, "auc": _test_auc(run)}
        rows.append(row)
        print(f"whole pair {k}: {row}", flush=True)
    return rows


def _test_auc(run) -> float:
    per_label = run.metrics("test")["model"]["per_label"]
    return next(iter(per_label.values()))["roc_auc"]["value"]


def _iqr(values) -> str:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"**{med:.2f}** ({q1:.2f}-{q3:.2f})"


def write(cases: list[dict], whole: list[dict], args) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, by `.venv/bin/python bench/layout.py --pairs {args.pairs} --whole-pairs "
        f"{args.whole_pairs} --whole-epochs {args.whole_epochs}`. Seconds per training step (forward, loss, backward on "
        "one real batch) in NCHW (the peer, PyTorch's default) and NHWC, as the plan's layout pilot times them (the "
        f"layouts taking turns for 7 rounds, medians); {args.pairs} repeats; ratio NCHW / NHWC per repeat (above 1: "
        "NHWC faster), median (interquartile range).",
        "",
        "| set | model | px | batch | NCHW s/step | NHWC s/step | NCHW / NHWC |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        s, m, px, b = c["case"]
        lines.append(f"| {s} | {m} | {px} | {b} | {np.median(c['nchw']):.4f} | {np.median(c['nhwc']):.4f} | "
                     f"{_iqr(c['ratios'])} |")  # fmt: skip
    if whole:
        t = np.array([[r[False]["s"], r[True]["s"]] for r in whole])
        auc = np.array([[r[False]["auc"], r[True]["auc"]] for r in whole])
        lines += ["", f"Whole `meddx.train` (PneumoniaMNIST, small CNN 28 px, batch 128, plan off, {args.whole_epochs} "
                  f"epochs, reading and evaluation included), {len(whole)} pairs: wall time ratio NCHW / NHWC "
                  f"{_iqr(t[:, 0] / t[:, 1])}; seconds NCHW {', '.join(f'{v:.0f}' for v in t[:, 0])}, NHWC "
                  f"{', '.join(f'{v:.0f}' for v in t[:, 1])}; test ROC AUC NCHW "
                  f"{', '.join(f'{v:.4f}' for v in auc[:, 0])}, NHWC {', '.join(f'{v:.4f}' for v in auc[:, 1])}."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--whole-pairs", type=int, default=3)
    ap.add_argument("--whole-epochs", type=int, default=4)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as out:
        cases = []
        for case in CASES:
            cases.append(time_case(case, args.pairs, out))
            print(case, [round(r, 2) for r in cases[-1]["ratios"]], flush=True)
        whole = whole_runs(args.whole_pairs, args.whole_epochs, order, out) if args.whole_pairs else []
    body = write(cases, whole, args)
    print(body)
    if not args.no_docs:
        print(f"wrote {write_section('layout', 'Memory layout on the CPU: NHWC against NCHW', body)}")


if __name__ == "__main__":
    main()
