"""`meddx compare`'s time and peak memory: two runs on N test samples (one label, about 0.7 N patients) with 2,000
patient resamples, each tree measured in a fresh process after a warm-up call (the kernel compiled or loaded): seconds
of one call, the peak of numpy's allocations during another (tracemalloc) and the growth of the peak RSS. With
`--before TREE` (e.g. a `git archive` of an older commit) both trees are measured and their intervals compared.

    nice -n 10 .venv/bin/python bench/compare_memory.py [--samples 20000] [--resamples 2000] [--before TREE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

CALL = """
import json, resource, sys, time, tracemalloc
from pathlib import Path
import numpy as np, pandas as pd
from meddx.evaluation.compare import compare_runs

class FakeRun:  # what compare_runs reads of a run: its folder, label names and predictions
    def __init__(self, name, frame):
        self.path, self.label_names, self.frame = Path(name), ["a"], frame
    def predictions(self, split):
        return self.frame

def runs(n, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(float)
    base = {"id": [f"s{i}" for i in range(n)], "patient_id": rng.integers(0, int(0.7 * n), n), "a": y}
    scores = [np.round(np.clip(y * s + rng.random(n), 0, 2) / 2, 3) for s in (0.8, 0.6)]  # ties, as in real runs
    return [FakeRun(f"run{k}", pd.DataFrame({**base, "p_a": p})) for k, p in enumerate(scores)]

n, resamples = int(sys.argv[1]), int(sys.argv[2])
compare_runs(runs(500), resamples=50)  # warm-up: the kernel compiled or loaded from its cache
big = runs(n)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); result = compare_runs(big, resamples=resamples); seconds = time.perf_counter() - t
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
tracemalloc.start(); compare_runs(big, resamples=resamples); peak = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({"seconds": seconds, "traced_mb": peak, "rss_growth_mb": growth, "result": result["runs"]}))
"""


def measure(tree: Path, samples: int, resamples: int) -> dict:
    """One fresh process importing meddx from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-c", CALL, str(samples), str(resamples)]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def largest_gap(a: list[dict], b: list[dict]) -> float:
    """Largest absolute difference between the two results' figures, intervals and paired differences."""
    gaps = []
    for ra, rb in zip(a, b):
        for part in ("figures", "vs_best"):
            for name, fa in ra[part].items():
                fb = rb[part][name]
                gaps += [abs(fa.get("value", fa.get("diff")) - fb.get("value", fb.get("diff")))]
                gaps += [abs(x - y) for x, y in zip(fa["ci"], fb["ci"])]
    return max(gaps)


def _spread(runs: list[dict]) -> str:
    seconds = [r["seconds"] for r in runs]
    return f"{min(seconds):.2f}-{max(seconds):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--before", type=Path, help="a tree holding an older meddx/ to measure too")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    trees = {"this tree": Path(__file__).resolve().parents[1]}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    runs = {name: [] for name in trees}
    for _ in range(args.repeats):  # each repeat measures every tree, in a random order
        for name in random.sample(list(trees), len(trees)):
            runs[name].append(measure(trees[name], args.samples, args.resamples))
    results = {name: {**r[0], "seconds": statistics.median(x["seconds"] for x in r), "spread": _spread(r)}
               for name, r in runs.items()}  # fmt: skip
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} by `nice -n 10 .venv/bin/python "
        f"bench/compare_memory.py --samples {args.samples} --resamples {args.resamples} --repeats {args.repeats}"
        + (f" --before {args.before}`" if args.before else "`")
        + f": `compare_runs`, 2 runs x {args.samples} samples x 1 label, {args.resamples} patient resamples, each "
        "tree in a fresh process after a warm-up call; seconds: median (min-max) of the repeats, the trees in a random "
        "order in each.",
        "",
        "| tree | seconds | peak numpy allocations (MiB) | peak RSS growth (MiB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['seconds']:.2f} ({r['spread']}) | {r['traced_mb']:.0f} | {r['rss_growth_mb']:.0f} |"
        for name, r in results.items()
    ]
    if args.before:
        old, new = results["before"], results["this tree"]
        gap = largest_gap(old["result"], new["result"])
        lines += [
            "",
            f"- Before / this tree: time **{old['seconds'] / new['seconds']:.1f}x**, peak allocations "
            f"**{old['traced_mb'] / new['traced_mb']:.1f}x**; largest difference in any figure, interval or paired "
            f"difference {gap:.3g}.",
        ]
    body = "\n".join(lines)
    print(body)
    if args.before:  # the section is a comparison: written only when both trees were measured
        print(
            f"wrote {write_section('compare-memory', 'meddx compare: chunked resamples against the whole matrix', body)}"
        )


if __name__ == "__main__":
    main()
