"""Self-configuring training on every shared image set: `meddx train --data X` with its plan under a budget, against
the fixed default recipe (plan off), pixels + logistic regression (scikit-learn, C chosen on val), and the published
figure where one exists. Each row: test ROC AUC with its patient-bootstrap 95% interval, on the set's own test split,
and wall minutes. Every choice is made on val; the test split chooses nothing.

    .venv/bin/python bench/plan.py [--budget 15] [--sets pneumoniamnist,breastmnist,...] [--out /tmp/plan-bench]

Rows are cached in --out/rows.json, so a rerun resumes; rows of public sets (with their runs' val/test predictions)
are also recorded under bench/results/plan/ (commit them), so the benchmark resumes on another machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

import meddx
from meddx.config import as_config
from meddx.data.leakage import enforce_no_leakage
from meddx.data.readers import read_dataset
from meddx.data.split import assign_splits
from meddx.data.tensors import ImageDataset, resolve_preprocess
from meddx.evaluation.evaluation import bootstrap_weights
from meddx.evaluation.metrics import ranking_metrics

sys.path.insert(0, str(Path(__file__).parent))
from _compare import verdict  # noqa: E402
from _docs import write_section  # noqa: E402
from _records import RECORDS, load_record, record_path, save_record  # noqa: E402

DATA = Path(os.environ.get("MEDDX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
SETS = {  # name -> (data section, published test AUC on the same split, or "")
    "pneumoniamnist": ({"path": "pneumoniamnist"}, "0.991 (Google AutoML Vision), 0.944 (ResNet-18 28), MedMNIST v2"),
    "breastmnist": ({"path": str(DATA / "medmnist/breastmnist.npz")}, "0.919 (AutoML Vision), 0.901 (ResNet-18 28)"),
    "datscan": ({"path": str(DATA / "datscan_spect_ppmi_2d")}, ""),
    "kermany": ({"path": str(DATA / "chest_xray_pneumonia_224")}, "0.968 on the official test (Kermany 2018)"),
    "nih64": ({"path": str(DATA / "nih_chestxray14_64px_binary")}, ""),
    "adrenal3d": ({"path": str(DATA / "medmnist/adrenalmnist3d.npz")}, "0.827 (ResNet-18+3D, unchecked)"),
}
PEER_SIZE = 28
HAND = {"model": {"name": "resnet18"}}  # the README's hand recipe: resnet18, 128 px (folders) or 32 px (MedMNIST)
HAND_SIZE = {"pneumoniamnist": 32, "breastmnist": 32, "adrenal3d": 32}  # ResNet-18 needs 32 px


def _auc_ci(y: np.ndarray, p: np.ndarray, patients: np.ndarray, resamples: int = 2000) -> tuple[float, float, float]:
    w = np.vstack([np.ones((1, len(y))), bootstrap_weights(patients, resamples, 0)])
    auc = ranking_metrics(y, p, w)["roc_auc"]
    lo, hi = np.nanpercentile(auc[1:], [2.5, 97.5])
    return float(auc[0]), float(lo), float(hi)


def meddx_row(name: str, data: dict, out: Path, kept: Path | None = None, **cfg) -> dict:
    """One meddx run through the public API; its test AUC, interval, wall minutes and (planned) its plan's minutes;
    the row and the run's predictions recorded at `kept` (public sets)."""
    started = time.perf_counter()
    run = meddx.train({"name": name, "output_dir": str(out), "data": data, "train": {"progress_bar": False}, **cfg})
    minutes = (time.perf_counter() - started) / 60
    m = run.metrics()
    auc = m["model"]["per_label"][m["labels"][0]]["roc_auc"]
    plan = run.plan
    choices = {c["field"]: c["value"] for c in plan.get("choices", [])}
    note = (
        f"{choices.get('model.name')} {choices.get('data.image_size')} px, {choices.get('train.ensemble')} model(s) "
        f"x {choices.get('train.max_epochs')} epochs max; planned {plan['estimate']['total_s'] / 60:.1f} min"
        + _selection_note(plan.get("selection") or {})
        if plan
        else f"{run.config.model.name} {run.preprocess.image_size[0]} px, {run.config.train.max_epochs} epochs max"
    )
    row = {
        "auc": auc["value"],
        "lo": auc.get("ci_low"),
        "hi": auc.get("ci_high"),
        "minutes": minutes,
        "note": note,
        "path": str(run.path),
        "commit": _commit(),
    }
    save_record(kept, run, {}, row)
    return row


def _selection_note(sel: dict) -> str:
    """What the search on val did, in a few words."""
    rows = sel.get("rows") or []
    if not rows:
        return f"; alternatives not tried ({sel['reason']})" if sel.get("reason") else ""
    figures = ", ".join(f"{r['candidate']} {r['val_auc']:.3f}" for r in rows)
    tie = " (a tie: the cheaper)" if "tie" in sel["reason"] else ""
    return f"; on val {figures}: {sel['chosen']}{tie}"


def peer_row(data: dict) -> dict:
    """Pixels at 28 px, standardised, into an L2 logistic regression whose C is chosen on val (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    cfg = as_config({"data": {**data, "image_size": PEER_SIZE, "channels": 1}})
    ds = read_dataset(cfg.data)
    assign_splits(ds, cfg.split)
    enforce_no_leakage(ds, cfg.split)
    if ds.records[0].index is not None and "3d" in data["path"]:
        cfg.data.views = [8, 14, 20]
    prep = resolve_preprocess(cfg.data, ds.subset("train").records)
    arrays = {}
    for s in ("train", "val", "test"):
        part = ds.subset(s)
        arrays[s] = (
            ImageDataset(part.records, prep).images.flatten(1).numpy(),
            part.labels[:, 0],
            np.array([r.patient_id for r in part.records]),
        )
    best = max(
        (LogisticRegression(C=c, max_iter=2000).fit(*arrays["train"][:2]) for c in (0.001, 0.01, 0.1, 1.0)),
        key=lambda m: ranking_metrics(arrays["val"][1], m.predict_proba(arrays["val"][0])[:, 1])["roc_auc"][0],
    )
    x, y, patients = arrays["test"]
    auc, lo, hi = _auc_ci(y, best.predict_proba(x)[:, 1], patients)
    return {
        "auc": auc,
        "lo": lo,
        "hi": hi,
        "minutes": (time.perf_counter() - started) / 60,
        "note": f"C = {best.C:g} (chosen on val)",
    }


def _commit() -> str:
    """The meddx commit a row was measured at."""
    import subprocess

    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def _fmt(r: dict) -> str:
    if r["auc"] != r["auc"]:
        return "not run"
    ci = f" ({r['lo']:.3f}-{r['hi']:.3f})" if r.get("lo") is not None else ""
    return f"{r['auc']:.3f}{ci}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=15.0, help="minutes of training for the planned run")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--out", default="/tmp/plan-bench")
    ap.add_argument("--skip", default="", help="rows not to run, e.g. kermany/fixed (shown as 'not run')")
    ap.add_argument("--records", type=Path, default=RECORDS, help="Where rows of public sets are kept.")
    ap.add_argument("--kinds", default="plan,hand,fixed,peer", help="which rows to run now (the table shows all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "rows.json"
    rows = json.loads(cache.read_text()) if cache.is_file() else {}
    jobs = [(s, kind) for s in args.sets.split(",") for kind in args.kinds.split(",")]
    random.Random(0).shuffle(jobs)  # no recipe always runs on a fresher (or busier) machine
    for name, kind in jobs:
        key = f"{name}/{kind}/{args.budget:g}" if kind in ("plan", "hand") else f"{name}/{kind}"
        kept = record_path("plan", name, key.split("/", 1)[1].replace("/", "-"), args.records)
        if key not in rows and (record := load_record(kept, _labels(name))) is not None:  # from another machine
            rows[key] = {**record.row, "record": str(kept)}
        if key in rows or f"{name}/{kind}" in args.skip.split(","):
            continue
        rows[key] = measure_row(name, kind, out, kept, args)
        cache.write_text(json.dumps(rows, indent=2))
        print(key, rows[key], flush=True)
    write_table(rows, args)


@functools.cache
def _labels(name: str) -> list[str]:
    """How the set's labels read today (a record made when they read otherwise is not reused)."""
    return read_dataset(as_config({"data": SETS[name][0]}).data).label_names


def measure_row(name: str, kind: str, out: Path, kept: Path | None, args) -> dict:
    """One row: the planned run, the README's hand recipe, the fixed defaults or the pixel peer."""
    data = SETS[name][0]
    if kind == "plan":
        return meddx_row(f"{name}-plan", data, out, kept, plan={"budget_minutes": args.budget})
    if kind == "hand":
        size = {"image_size": HAND_SIZE.get(name, 128)}
        return meddx_row(f"{name}-hand", {**data, **size}, out, kept, **HAND, plan={"budget_minutes": args.budget})
    if kind == "fixed":
        fixed = {"views": [8, 14, 20]} if name == "adrenal3d" else {}
        return meddx_row(f"{name}-fixed", {**data, **fixed}, out, kept, plan={"enabled": False})
    row = {**peer_row(data), "commit": _commit()}
    save_record(kept, None, {}, row)
    return row


def _run_of(row: dict):
    """The run a row measured (its folder, or its record when the folder is on another machine), for compare."""
    if row.get("path") and Path(row["path"]).is_dir():
        return row["path"]
    return load_record(Path(row["record"])) if row.get("record") else None


def write_table(rows: dict, args) -> None:
    command = f"--budget {args.budget:g}" + (f" --sets {args.sets}" if args.sets != ",".join(SETS) else "")
    command += f" --skip {args.skip}" if args.skip else ""
    commits = ", ".join(sorted({r.get("commit", "unknown") for r in rows.values()}))
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, 2 CPU cores (meddx at {commits}), by "
        f"`.venv/bin/python bench/plan.py {command}`. Test ROC AUC (95% patient-bootstrap interval) on each set's own test split; "
        "minutes are wall time of the whole `meddx.train` call (reading, planning, pilot, training, evaluation).",
        "",
        "| data set | planned (`meddx train --data X`) | README hand recipe, same budget | fixed defaults (plan off) "
        "| pixels + logistic regression | published | planned / hand / fixed / peer minutes | planned vs hand (`meddx compare`) "
        "| planned vs fixed (`meddx compare`) | what the plan chose |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.sets.split(","):
        b = f"{args.budget:g}"
        keys = (f"{name}/plan/{b}", f"{name}/hand/{b}", f"{name}/fixed", f"{name}/peer")
        plan, hand, fixed, peer = (rows.get(k) or {"auc": float("nan"), "minutes": float("nan")} for k in keys)
        if plan["auc"] != plan["auc"]:
            continue
        minutes = " / ".join(
            "-" if r["minutes"] != r["minutes"] else f"{r['minutes']:.1f}" for r in (plan, hand, fixed, peer)
        )
        lines.append(
            f"| {name} | {_fmt(plan)} | {_fmt(hand)} | {_fmt(fixed)} | {_fmt(peer)} | {SETS[name][1]} | "
            f"{minutes} | {verdict(_run_of(plan), _run_of(hand), ('planned', 'hand'))} | "
            f"{verdict(_run_of(plan), _run_of(fixed), ('planned', 'fixed'))} | {plan['note']} |"
        )
    lines += [
        "",
        "Kermany is read as `meddx train --data` reads it: patients guessed from its file names (`person1000_bacteria_2931`"
        " and `person1000_virus_1681` are one child; the split equals the one its explicit regex gave before). "
        "The README hand recipe is "
        "`--model resnet18 --set data.image_size=128` (32 px on the 28 px MedMNIST sets, the least ResNet-18 takes) with "
        "the same budget fitting its epochs and seeds. The fixed "
        "defaults: small CNN at the native size, 20 epochs at most, dataset normalisation, batch 128 (3-D: the "
        "same three slices as the plan). Published figures come from other splits except MedMNIST's, which "
        "use the same official test split. NIH 64 px keeps its official valid folder as val, its patients guessed from "
        "the file names: the 67 train images of the 15 patients valid shares are dropped and a 48-image test split is "
        "carved from train by patient, hence its wide intervals. 'not run': skipped with --skip"
        + (f" ({args.skip})" if args.skip else "")
        + ". Planned runs stop early when val loss stops improving, so they often end well inside the budget.",
    ]
    table = "\n".join(lines)
    print(table)
    title = f"Self-configuring training: the plan against fixed defaults, {args.budget:g}-minute budget"
    print(f"wrote {write_section(f'plan-{args.budget:g}', title, table)}")


if __name__ == "__main__":
    main()
