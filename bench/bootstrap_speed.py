"""Bootstrap speed: 2,000 patient resamples of 10,000 samples x 17 labels (the Tianchi shape), meddx's vectorised
pass against the usual loop of scikit-learn calls per resample, measured in the same run.

    .venv/bin/python bench/bootstrap_speed.py [--resamples 2000] [--peer-resamples 100]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from meddx.config import EvaluateConfig
from meddx.evaluation.evaluation import bootstrap_weights, decisions
from meddx.evaluation.intervals import score_with_intervals

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402


def data(n: int, labels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.02, 0.2, labels)).astype(float)
    p = np.clip(0.3 * y + 0.7 * rng.random((n, labels)), 0, 1)
    patients = rng.integers(0, int(n * 0.7), n)  # some patients with several samples
    return y, p, patients


def peer(y, p, patients, resamples: int) -> float:
    """Seconds per resample of the usual loop: resample patients, then sklearn per label (AUC and AP only)."""
    rng = np.random.default_rng(1)
    uniq, inv = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    start = time.perf_counter()
    for _ in range(resamples):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(uniq), len(uniq))])
        for j in range(y.shape[1]):
            if 0 < y[idx, j].sum() < len(idx):
                roc_auc_score(y[idx, j], p[idx, j])
                average_precision_score(y[idx, j], p[idx, j])
    return (time.perf_counter() - start) / resamples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--peer-resamples", type=int, default=100)
    args = ap.parse_args()
    y, p, patients = data(10_000, 17)
    names = [f"l{j}" for j in range(17)]
    cfg = EvaluateConfig(bootstrap=args.resamples)
    start = time.perf_counter()
    result = score_with_intervals(
        y, p, decisions(p, "multilabel", np.full(17, 0.5)), "multilabel", names, patients, cfg
    )
    ours = time.perf_counter() - start
    assert result["per_label"]["l0"]["roc_auc"]["ci_low"] < result["per_label"]["l0"]["roc_auc"]["value"]
    w = bootstrap_weights(patients, 1, 0)
    assert w.shape == (1, 10_000)
    per_resample = peer(y, p, patients, args.peer_resamples)
    peer_total = per_resample * args.resamples
    table = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()} by `.venv/bin/python bench/bootstrap_speed.py` (one run).
10,000 samples x 17 labels, {args.resamples} resamples of ~7,000 patients.

| method | metrics per resample | time for {args.resamples} resamples (s) |
|---|---|---|
| meddx `score_with_intervals` (vectorised, weights) | 10 per label + macro, micro decisions, mlogloss, exact match | {ours:.1f} |
| loop of scikit-learn calls (peer; timed on {args.peer_resamples} resamples, scaled) | ROC AUC and AP per label only | {peer_total:.1f} |

- Speed-up, peer time / meddx time: **{peer_total / ours:.1f}x**; in its time meddx computes every figure of the report, the peer only ROC AUC and AP.
"""
    print(table)
    print(
        f"wrote {write_section('bootstrap', 'Bootstrap intervals: vectorised against a loop of scikit-learn calls', table)}"
    )


if __name__ == "__main__":
    main()
