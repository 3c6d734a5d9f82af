"""Bootstrap speed: the whole report of 10,000 samples x 17 labels (the Tianchi shape) with 2,000 patient resamples
(`evaluate_arrays`: the model and the four baselines, trade-off tables and ECE intervals, one fused numba pass over
one draw) against the usual loop of scikit-learn calls per resample (the model's ROC AUC and AP only), measured in the
same run, in randomised order, several times; and the kernel's compile time on the first call of a fresh process.

    .venv/bin/python bench/bootstrap_speed.py [--resamples 2000] [--peer-resamples 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from meddx.config import EvaluateConfig
from meddx.evaluation.evaluation import evaluate_arrays
from meddx.evaluation.fused import count_chunks, patient_index

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

LABELS = 17
FIRST_CALL = """
import json, time
t = time.perf_counter(); import numba; numba_import = time.perf_counter() - t
import numpy as np
from meddx.config import EvaluateConfig
from meddx.evaluation.evaluation import evaluate_arrays
y = (np.random.default_rng(0).random((200, 3)) < 0.3).astype(float); p = np.random.default_rng(1).random((200, 3))
run = lambda: evaluate_arrays(y, p, y, p, np.arange(200), y.mean(0), "multilabel", list("abc"), EvaluateConfig(bootstrap=20))
t = time.perf_counter(); run(); first = time.perf_counter() - t
t = time.perf_counter(); run(); second = time.perf_counter() - t
print(json.dumps({"numba_import": numba_import, "first": first, "second": second}))
"""


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


def first_calls(repeats: int) -> dict[str, list[float]]:
    """Fresh processes, the kernel's cache in a new folder: the first compiles it, the next load it from disk."""
    out: dict[str, list[float]] = {"numba_import": [], "compile": [], "cache_load": []}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        for i in range(repeats + 1):
            run = subprocess.run(
                [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True
            )
            t = json.loads(run.stdout)
            out["compile" if i == 0 else "cache_load"].append(t["first"] - t["second"])
            out["numba_import"].append(t["numba_import"])
    return out


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """Median (min-max), or the one value."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def measure(args) -> dict[str, list[float]]:
    """`repeats` rounds, each timing the whole report and the peer in random order."""
    y, p, patients = data(10_000, LABELS)
    y_val, p_val, _ = data(3_000, LABELS, seed=1)
    names = [f"l{j}" for j in range(LABELS)]
    cfg = EvaluateConfig(bootstrap=args.resamples)
    evaluate_arrays(y_val, p_val, y[:500], p[:500], patients[:500], y.mean(0), "multilabel", names, cfg)  # warm
    times: dict[str, list[float]] = {"ours": [], "peer": [], "draw": []}
    order = np.random.default_rng(args.seed)
    for _ in range(args.repeats):
        for which in order.permutation(["ours", "peer"]):
            if which == "peer":
                times["peer"].append(peer(y, p, patients, args.peer_resamples) * args.resamples)
                continue
            start = time.perf_counter()
            result = evaluate_arrays(y_val, p_val, y, p, patients, y.mean(0), "multilabel", names, cfg)
            times["ours"].append(time.perf_counter() - start)
            assert (
                result["model"]["per_label"]["l0"]["roc_auc"]["ci_low"]
                < result["model"]["per_label"]["l0"]["roc_auc"]["value"]
            )
        start = time.perf_counter()  # of which: drawing the resamples (numpy's multinomial, as before)
        for _ in count_chunks(patient_index(patients)[1], 0, [args.resamples]):
            times["draw"].append(time.perf_counter() - start)
    times["ratio"] = [b / a for a, b in zip(times["ours"], times["peer"])]
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--peer-resamples", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="order of the two in each round")
    args = ap.parse_args()
    t = measure(args)
    first = first_calls(3)
    table = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()}, {os.cpu_count()} cores shared with other work (numba {numba.__version__}), by `.venv/bin/python bench/bootstrap_speed.py --resamples {args.resamples} --peer-resamples {args.peer_resamples} --repeats {args.repeats}`.
10,000 samples x 17 labels (~5,000 patients), {args.resamples} patient resamples; {args.repeats} rounds, each timing both in random order: median (min-max).

| method | figures per resample | time for {args.resamples} resamples (s) |
|---|---|---|
| meddx `evaluate_arrays`, the whole report: one draw, one fused numba pass | model and 4 baselines: 10 per label, macro, micro, mlogloss, exact match; 9 trade-off points and ECE per label | {spread(t["ours"])} |
| drawing the resamples alone (numpy multinomial as before, so the intervals are unchanged; in meddx's time, overlapped with the rest) | | {spread(t["draw"])} |
| loop of scikit-learn calls (peer; timed on {args.peer_resamples} resamples, scaled) | model's ROC AUC and AP per label only | {spread(t["peer"], "{:.1f}")} |

- Speed-up, peer time / meddx time per round: **{np.median(t["ratio"]):.0f}x** (rounds {min(t["ratio"]):.0f}x-{max(t["ratio"]):.0f}x); goal >= 100x. In its time meddx computes every figure of the report for the model and four baselines, the peer only the model's ROC AUC and AP.
- First call in a fresh process (not in the times above): importing numba {spread(first["numba_import"])} s; compiling the kernel {spread(first["compile"], "{:.1f}")} s the first time (an empty cache), loading it from numba's disk cache (`cache=True`) {spread(first["cache_load"])} s after ({len(first["cache_load"])} processes).
"""
    print(table)
    print(f"ratio {np.median(t['ratio']):.1f}x")
    print(
        f"wrote {write_section('bootstrap', 'Bootstrap intervals: one fused pass against a loop of scikit-learn calls', table)}"
    )


if __name__ == "__main__":
    main()
