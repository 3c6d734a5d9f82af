"""Test-time augmentation against the model alone, on the planned runs of `bench/plan.py` (same models, same samples):
the plan's verdict on val (what `meddx train` would do), and, for the record only, test ROC AUC both ways with the
paired patient-bootstrap interval of the difference. The test split chooses nothing here.

    .venv/bin/python bench/tta.py [--runs /tmp/plan-bench] [--out /tmp/tta-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import meddx
from meddx.evaluation.evaluation import bootstrap_weights
from meddx.evaluation.selection import choose_tta, macro_auc, shifted_probabilities

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

SETS = ["pneumoniamnist", "breastmnist", "datscan", "kermany", "nih64", "adrenal3d"]


def tta_row(run_dir: Path) -> dict:
    """The val verdict (choose_tta on a copy of the run) and the test figures with and without the shifts."""
    run = meddx.load_run(run_dir)
    test = run.predictions("test")
    by_id = {r.id: r for r in run.records("test")}
    cols = [f"p_{n}" for n in run.label_names]
    on = shifted_probabilities(run, [by_id[i] for i in test["id"]])
    y, patients = test[run.label_names].to_numpy(np.float64), test["patient_id"].to_numpy()
    w = np.vstack([np.ones(len(y)), bootstrap_weights(patients, 2000, 0)])  # the same patient resamples for both
    off_auc, on_auc = macro_auc(y, test[cols].to_numpy(), w), macro_auc(y, on, w)
    d = on_auc - off_auc
    lo, hi = np.nanpercentile(d[1:], [2.5, 97.5])
    on_test = {"off": off_auc[0], "on": on_auc[0], "diff": d[0], "lo": lo, "hi": hi}
    verdict = choose_tta(run)  # may rewrite the copy's predictions; the test figures above were taken first
    return {"val": verdict, "test": on_test}


def _row(name: str, r: dict) -> str:
    val, t = {row["candidate"]: row for row in r["val"]["rows"]}, r["test"]
    return (
        f"| {name} | {val['off']['val_auc']:.4f} | {val['on']['val_auc']:.4f} | {r['val']['chosen']} | "
        f"{t['off']:.5f} | {t['on']:.5f} | {t['diff'] + 0.0:+.5f} ({t['lo'] + 0.0:+.5f} to {t['hi'] + 0.0:+.5f}) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="/tmp/plan-bench")
    ap.add_argument("--out", default="/tmp/tta-bench")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rows = []
    table = json.loads((Path(args.runs) / "rows.json").read_text())  # the planned rows of the 15-minute table
    for name in SETS:
        src = Path(table.get(f"{name}/plan/15", {}).get("path", "-"))
        if not (src / "metrics.json").is_file():
            continue
        shutil.copytree(src, out / name)
        rows.append(_row(name, tta_row(out / name)))
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d')} by `.venv/bin/python bench/tta.py` on copies of the planned runs of "
            "`bench/plan.py` as they stood when this ran (the 15-minute table above, unless it was measured again since): the same models and samples with and without test-time "
            "augmentation (the image and four copies shifted by 3% of its side, probabilities averaged). The val "
            "columns are what the plan judges (paired patient bootstrap, a tie keeps it off); the test columns are "
            "reported only, never used to choose. Difference: test AUC with the shifts minus without, with its paired "
            "95% interval.",
            "",
            "| data set | val AUC, model alone | val AUC, with shifts | the plan keeps | test AUC, model alone | "
            "test AUC, with shifts | test difference (95% CI) |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(body)
    print(f"wrote {write_section('tta', 'Test-time augmentation: with shifts against the model alone', body)}")


if __name__ == "__main__":
    main()
