"""`meddx compare`'s verdict on two runs in a few words, for the benchmarks' "which won" lines."""

from __future__ import annotations

import meddx
from meddx.errors import MeddxError
from meddx.evaluation.compare import compare_runs


def verdict(a, b, names: tuple[str, str]) -> str:
    """Which of runs `a` and `b` (folders, or objects with `path`, `label_names` and `predictions` such as a
    benchmark record) ranks first on their common test patients, by how much (paired 95% interval of the AUC
    difference), DeLong's p, and whether the difference is real."""
    if not a or not b:
        return "-"
    a, b = (meddx.load_run(r) if isinstance(r, str) else r for r in (a, b))
    try:
        result = compare_runs([a, b])
    except MeddxError as e:  # e.g. the runs split otherwise (another duplicate rule)
        return f"not comparable ({str(e)[:60]})"
    best, other = result["runs"]
    d = other["vs_best"]["roc_auc"]
    winner = names[0] if best["run"] == str(a.path) else names[1]
    p = ", ".join(f"{t['p']:.2g}" for t in other["delong"].values())
    real = "a real difference" if d["real"] else "not a real difference"
    return f"{winner} ahead by {-d['diff']:.3f} ({-d['ci'][1]:.3f} to {-d['ci'][0]:.3f}), DeLong p {p}: {real}"
