"""PneumoniaMNIST: meddx's default recipe and training throughput against a plain PyTorch loop, in one run.

Peer: a hand-written loop (same 6-conv CNN, Adam 1e-3, unweighted BCE, batch 128, 12 epochs, best val loss
kept, pixels / 255). Figures written into docs/benchmarks.md between this script's markers.

    .venv/bin/python bench/pneumoniamnist_plain_vs_meddx.py [--epochs 12]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

import meddx
from meddx.data.readers import bundled_path
from meddx.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402
from _plain import plain_bce_epoch  # noqa: E402


def plain_loop(epochs: int, batch_size: int = 128, seed: int = 0) -> dict:
    """The peer: nothing but torch, the same model class, best val-loss weights kept."""
    torch.manual_seed(seed)
    d = np.load(bundled_path("pneumoniamnist"))
    t = lambda k: torch.from_numpy(d[f"{k}_images"]).float().div(255).unsqueeze(1)  # noqa: E731
    y = lambda k: torch.from_numpy(d[f"{k}_labels"]).float()  # noqa: E731
    xtr, ytr, xva, yva, xte, yte = t("train"), y("train"), t("val"), y("val"), t("test"), y("test")
    model = create_model("small_cnn", 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state = float("inf"), None
    start = time.perf_counter()
    for _ in range(epochs):
        plain_bce_epoch(model, opt, xtr, ytr, batch_size)
        model.eval()
        with torch.no_grad():
            val = sum(
                F.binary_cross_entropy_with_logits(model(xva[i : i + 512]), yva[i : i + 512], reduction="sum").item()
                for i in range(0, len(xva), 512)
            ) / len(xva)
        if val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        p = torch.sigmoid(model(xte)).numpy()[:, 0]
    return {
        "test_auc": roc_auc_score(yte.numpy()[:, 0], p),
        "seconds": seconds,
        "samples_per_s": len(xtr) * epochs / seconds,
    }


def meddx_run(out: str, name: str, **overrides) -> dict:
    """A meddx run through the public API; returns test AUC and training throughput."""
    base = {
        "data.path": "pneumoniamnist",
        "split.on_duplicate_images": "drop_from_train",
        "name": name,
        "output_dir": out,
    }
    run = meddx.train(None, **{k.replace(".", "__"): v for k, v in {**base, **overrides}.items()})
    metrics = json.loads((run.path / "metrics.json").read_text())
    training = json.loads((run.path / "training.json").read_text())
    auc = metrics["model"]["per_label"]["pneumonia"]["roc_auc"]
    return {
        "test_auc": auc["value"],
        "ci": (auc.get("ci_low"), auc.get("ci_high")),
        "seconds": training["seconds"],
        "samples_per_s": training["train_samples_per_second"],
        "epochs": training["epochs_run"],
        "best_epoch": training["best_epoch"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3, help="seeds of meddx's default recipe")
    args = ap.parse_args()
    same_recipe = {
        "train.max_epochs": args.epochs,
        "train.patience": 1000,
        "train.lr": 1e-3,
        "train.augment.enabled": False,
        "train.class_weights": "off",
        "train.weight_decay": 0.0,
    }
    plains, sames, seeds = [], [], []
    with tempfile.TemporaryDirectory() as out:
        for k in range(args.seeds):  # interleaved, so a noisy neighbour slows both sides of a pair alike
            plains.append(plain_loop(args.epochs, seed=k))
            sames.append(meddx_run(out, f"same-{k}", **same_recipe, **{"train.seed": k}))
            seeds.append(meddx_run(out, f"default-{k}", **{"train.seed": k}))
            print(
                f"seed {k}: plain {plains[-1]}\n  meddx same recipe {sames[-1]}\n  meddx default {seeds[-1]}",
                flush=True,
            )
    plain, same, default = plains[0], sames[0], seeds[0]
    aucs = [r["test_auc"] for r in seeds]
    plain_aucs = [r["test_auc"] for r in plains]
    ratios = [m["samples_per_s"] / p["samples_per_s"] for m, p in zip(sames, plains)]
    ratio = float(np.median(ratios))
    table = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__},
by `.venv/bin/python bench/pneumoniamnist_plain_vs_meddx.py --epochs {args.epochs} --seeds {args.seeds}` (all rows in one run).
Bundled PneumoniaMNIST, 28 px, official test split of 624 images; same `small_cnn` (6 conv) everywhere.

| run | test ROC AUC | training samples/s | fit time (s) |
|---|---|---|---|
| plain PyTorch loop (peer), seed 0: Adam 1e-3, BCE, {args.epochs} epochs, best val loss kept | {plain["test_auc"]:.4f} | {plain["samples_per_s"]:.0f} | {plain["seconds"]:.0f} |
| meddx, the same recipe, seed 0 (no augmentation, no class weights, {args.epochs} epochs) | {same["test_auc"]:.4f} | {same["samples_per_s"]:.0f} | {same["seconds"]:.0f} |
| meddx default recipe, seed 0 (`make demo`: augmentation, weighted BCE, AdamW + cosine, early stopping; best epoch {default["best_epoch"]} of {default["epochs"]}) | {default["test_auc"]:.4f} (95% CI {default["ci"][0]:.3f}-{default["ci"][1]:.3f}) | {default["samples_per_s"]:.0f} | {default["seconds"]:.0f} |
| plain PyTorch loop, seeds 0-{args.seeds - 1} | mean {np.mean(plain_aucs):.4f}, min {min(plain_aucs):.4f}, max {max(plain_aucs):.4f} | | |
| meddx default recipe, seeds 0-{args.seeds - 1} | mean {np.mean(aucs):.4f}, min {min(aucs):.4f}, max {max(aucs):.4f} | | |

- End-to-end throughput ratio meddx / plain loop: {ratio:.3f}, the median of {args.seeds} interleaved pairs
  ({", ".join(f"{r:.3f}" for r in ratios)}). Not like for like (meddx's loader drops the last partial batch; few pairs
  in a fixed order on a shared machine): the like-for-like step time is `bench/overhead.py`'s "Framework overhead".
- Test AUC, meddx default recipe minus plain loop, mean over the same seeds: **{np.mean(aucs) - np.mean(plain_aucs):+.4f}**.
- Published peers on the same test split (MedMNIST v2, Yang et al. 2023): ResNet-18 (28) 0.944, ResNet-50 (224) 0.962,
  Google AutoML Vision 0.991.
- meddx's samples/s include its validation pass and checkpointing each epoch, as the plain loop's include its validation.
"""
    print(table)
    print(f"wrote {write_section('pneumoniamnist', 'PneumoniaMNIST: meddx against a plain PyTorch loop', table)}")


if __name__ == "__main__":
    main()
