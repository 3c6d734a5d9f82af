"""The README's three-command Tianchi path, timed end to end on this machine: word2vec pretraining, a 5-fold `meddx cv`
of RCNN with the vectors and FGM, and the submission (checked by `meddx check-submission`). The figure is its wall
time against the issue's 2-hour limit on 2 cores, with the recipe's out-of-fold score.

    .venv/bin/python bench/tianchi_recipe.py [--round 1|2] [--folds 5] [--out /tmp/tianchi-recipe]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEDDX = str(Path(sys.executable).parent / "meddx")
LIMIT_MIN = 120
TEST = {1: "tianchi_round1/track1_round1_testA_20210222.csv", 2: None}  # round 2 has no shared test file


def step(label: str, args: list[str], times: dict) -> None:
    """Run one meddx command from the repository root (the examples' relative data paths), timed."""
    started = time.perf_counter()
    print(f"$ meddx {' '.join(args)}", flush=True)
    proc = subprocess.run([MEDDX, *args], cwd=ROOT, capture_output=True, text=True)
    times[label] = (time.perf_counter() - started) / 60
    print(proc.stdout[-1500:], flush=True)
    if proc.returncode != 0:
        sys.exit(f"{label} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--round", type=int, choices=(1, 2), default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, help="a smoke test: fewer epochs than the example's (not the recipe)")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "tianchi-recipe"))
    args = ap.parse_args()
    out, r = Path(args.out), args.round
    shutil.rmtree(out, ignore_errors=True)
    example, name = f"examples/tianchi_round{r}.yaml", f"r{r}-rcnn"
    data = Path(os.environ.get("MEDDX_DATA_DIR", ROOT.parent / "shared" / "data"))
    times: dict[str, float] = {}
    step("word2vec", ["pretrain", example, "--objective", "word2vec", "-o", str(out / "w2v")], times)
    cv = ["cv", example, "--folds", str(args.folds), "--set", f"name={name}", "--set", "model.name=rcnn",
          "--set", f"model.embeddings={out / 'w2v'}", "--set", "train.tricks.adversarial=fgm",
          "--set", f"output_dir={out / 'runs'}"]  # fmt: skip
    cv += ["--set", f"train.max_epochs={args.epochs}"] if args.epochs else []
    step("cv", cv, times)
    if TEST[r]:
        sub = out / "submission.csv"
        step("submit", ["submit", str(out / "runs" / name), "--data", str(data / TEST[r]), "-o", str(sub)], times)
        step("check", ["check-submission", str(sub), "--data", str(data / TEST[r])], times)
    scores = json.loads((out / "runs" / name / "cv.json").read_text())["model"]
    render(args, times, scores)


def render(args: argparse.Namespace, times: dict, scores: dict) -> None:
    total = sum(times.values())
    figures = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float))
    body = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPU cores, by "
            f"`.venv/bin/python bench/tianchi_recipe.py --round {args.round} --folds {args.folds}"
            + (f" --epochs {args.epochs}" if args.epochs else "")
            + "`: the README's "
            f"commands for round {args.round}, run as a user would (one process each, from the repository root).",
            "",
            "| step | minutes |",
            "|---|---|",
            *[f"| {k} | {v:.1f} |" for k, v in times.items()],
            f"| **all** | **{total:.1f}** |",
            "",
            f"- Wall time / the 2-hour limit: **{total / LIMIT_MIN:.2f}** ({'within' if total <= LIMIT_MIN else 'over'}"
            " the limit).",
            f"- Out-of-fold ({args.folds} folds) scores of the recipe, from `cv.json`: {figures}.",
        ]
    )
    print(body)
    if args.epochs:
        return print("a smoke test (--epochs): docs/benchmarks.md left as it was")
    key = f"tianchi-recipe-r{args.round}"
    print(f"wrote {write_section(key, f'Tianchi round {args.round}: the README recipe, timed', body)}")


if __name__ == "__main__":
    main()
