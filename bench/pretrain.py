"""Self-supervised pretraining on unlabelled chest X-rays (SimCLR, `meddx pretrain`) against training from scratch and
against supervised transfer from pneumonia, fine-tuned on two small targets with the same recipe and epochs.

Pretraining images (labels unused): every shared chest X-ray outside the targets' val and test splits, i.e. the
Kermany train folder (5,216), PneumoniaMNIST train (4,708), the NIH 64 px images in the NIH target's train split and
the 6 NIH course images. Supervised source: the small CNN trained on Kermany's pneumonia labels. Targets: NIH
ChestX-ray14 64 px normal vs abnormal (split anew by patient, 25% test) and BreastMNIST (28 px, ultrasound: another
modality). Every row is the small CNN with per-image z-scoring, the plan off; AUC on the target's own test split with a
patient-bootstrap 95% interval; "which won" is `meddx compare` on the same test patients. With --plan-budget, the
README's path (`meddx train --data nih64/ --init-from encoder.pt`, the plan on) is run against the plan from scratch.

    .venv/bin/python bench/pretrain.py [--seeds 3] [--ssl-epochs 15] [--source-epochs 6] [--target-epochs 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import meddx
from meddx.config import DataConfig, SplitConfig
from meddx.data.readers import bundled_path, read_dataset
from meddx.data.split import assign_splits

sys.path.insert(0, str(Path(__file__).parent))
from _compare import verdict  # noqa: E402
from _docs import write_section  # noqa: E402
from transfer import DATA, NIH_SPLIT, train  # noqa: E402

NIH = {"path": str(DATA / "nih_chestxray14_64px_binary"), "channels": 1, "patient_regex": r"^(\d{8})_"}
BREAST = {"path": str(DATA / "medmnist" / "breastmnist.npz")}
SAMPLE = {"normalize": "sample", "channels": 1}  # what SimCLR learnt from: one channel, each image z-scored
VARIANTS = [  # (row, source key or None, finetune_depth)
    ("from scratch (peer)", None, "all"),
    ("supervised transfer from Kermany pneumonia, all blocks", "supervised", "all"),
    ("SimCLR encoder, head only (linear probe)", "simclr", 0),
    ("SimCLR encoder, all blocks", "simclr", "all"),
]


def pretraining_sources(work: Path) -> list[str]:
    """The unlabelled inputs: Kermany, PneumoniaMNIST train only, the NIH target's train images, the course images."""
    ds = read_dataset(DataConfig(**NIH), check_files=False)
    assign_splits(ds, SplitConfig(**NIH_SPLIT))
    nih_train = [r.source for r in ds.records if r.split == "train"]
    (work / "nih_train.csv").write_text("image\n" + "\n".join(nih_train) + "\n")
    with np.load(bundled_path("pneumoniamnist")) as z:
        np.savez(work / "pneumoniamnist_train.npz", train_images=z["train_images"])
    return [
        str(DATA / "chest_xray_pneumonia_224"),
        str(work / "pneumoniamnist_train.npz"),
        str(work / "nih_train.csv"),
        str(DATA / "nih_chestxray14_course_small" / "images-small"),
    ]


def simclr(work: Path, epochs: int) -> tuple[str, dict]:
    """SimCLR of the small CNN at 64 px through meddx's API; the encoder file and pretrain.json."""
    out = meddx.pretrain(
        {
            "model": {"name": "small_cnn"},
            "data": {"path": str(DATA / "chest_xray_pneumonia_224"), "image_size": 64},
            "pretrain": {"objective": "simclr", "data": pretraining_sources(work), "dir": str(work / "simclr"),
                         "max_epochs": epochs, "batch_size": 128},
            "train": {"progress_bar": False},
        }
    )  # fmt: skip
    return str(out / "encoder.pt"), json.loads((out / "pretrain.json").read_text())


def fine_tune(out: str, sources: dict, target: tuple[str, dict, dict | None], args) -> list[dict]:
    """Every variant x seed on one target."""
    key, data, split = target
    rows = []
    for k, (label, source, depth) in enumerate(VARIANTS):
        runs = []
        for seed in range(args.seeds):
            r = train(out, f"{key}-v{k}-s{seed}", {**data, **SAMPLE}, split, max_epochs=args.target_epochs, seed=seed,
                      finetune_depth=depth, init_from=sources[source] if source else None)  # fmt: skip
            print(f"  {key} / {label} / seed {seed}: AUC {r['auc']:.3f} in {r['seconds']:.0f} s", flush=True)
            runs.append(r)
        rows.append({"label": label, "runs": runs})
    return rows


def planned(out: str, encoder: str, budget: float) -> list[dict]:
    """The README's path on NIH 64 px: `meddx train --data` with the plan, with and without the SimCLR encoder."""
    rows = []
    for label, init in (("plan, from scratch", None), ("plan, --init-from the SimCLR encoder", encoder)):
        started = time.perf_counter()
        cfg = {"name": f"plan-{'ssl' if init else 'scratch'}", "output_dir": out, "data": NIH,
               "split": NIH_SPLIT, "train": {"progress_bar": False, "init_from": init},
               "plan": {"budget_minutes": budget}, "evaluate": {"bootstrap": 2000}}  # fmt: skip
        run = meddx.train(cfg)
        m = json.loads((run.path / "metrics.json").read_text())
        auc = m["model"]["per_label"][m["labels"][0]]["roc_auc"]
        plan = json.loads((run.path / "plan.json").read_text())
        chose = {c["field"]: c["value"] for c in plan["choices"]}
        rows.append({"label": label, "path": str(run.path), "auc": auc["value"], "lo": auc["ci_low"],
                     "hi": auc["ci_high"], "minutes": (time.perf_counter() - started) / 60,
                     "chose": f"{chose.get('model.name')} {chose.get('data.image_size')} px, normalise "
                              f"{chose.get('data.normalize')}, {chose.get('train.ensemble')} model(s)"})  # fmt: skip
        print(f"  {label}: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ssl-epochs", type=int, default=15)
    ap.add_argument("--source-epochs", type=int, default=6)
    ap.add_argument("--target-epochs", type=int, default=15)
    ap.add_argument("--plan-budget", type=float, default=0, help="minutes; 0 leaves the planned rows out")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "pretrain-bench"), help="run folders")
    ap.add_argument("--from-json", help="re-render the table from the results a previous run saved")
    args = ap.parse_args()
    saved = Path(args.out) / "results.json"
    if args.from_json:
        return render(**json.loads(Path(args.from_json).read_text()))
    started = time.perf_counter()
    shutil.rmtree(args.out, ignore_errors=True)
    work = Path(args.out)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    encoder, info = simclr(work, args.ssl_epochs)
    ssl_min = (time.perf_counter() - t0) / 60
    print(f"SimCLR: {info}", flush=True)
    t0 = time.perf_counter()
    src = train(args.out, "supervised", {"path": str(DATA / "chest_xray_pneumonia_224"), "image_size": 64, **SAMPLE},
                max_epochs=args.source_epochs)  # fmt: skip
    sup_min = (time.perf_counter() - t0) / 60
    sources = {"simclr": encoder, "supervised": src["path"]}
    targets = [("nih64", NIH, NIH_SPLIT), ("breastmnist", BREAST, None)]
    results = {key: fine_tune(args.out, sources, (key, data, split), args) for key, data, split in targets}
    plan_rows = planned(args.out, encoder, args.plan_budget) if args.plan_budget else []
    record = {"args": vars(args), "minutes": (time.perf_counter() - started) / 60, "ssl": info,
              "ssl_minutes": ssl_min, "source": src, "source_minutes": sup_min, "results": results,
              "planned": plan_rows}  # fmt: skip
    saved.write_text(json.dumps(record, indent=1))
    print(f"results saved in {saved}")
    render(**record)


def _variant_lines(rows: list[dict]) -> list[str]:
    scratch = statistics.mean(r["auc"] for r in rows[0]["runs"])
    lines = [
        "| variant | test ROC AUC per seed (95% CI) | mean (sd) over seeds | mean minus scratch | best epoch, seed 0 "
        "| fit s, seed 0 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        aucs = [r["auc"] for r in row["runs"]]
        per_seed = "; ".join(f"{r['auc']:.3f} ({r['lo']:.3f}-{r['hi']:.3f})" for r in row["runs"])
        sd = statistics.stdev(aucs) if len(aucs) > 1 else 0.0
        r0 = row["runs"][0]
        lines.append(
            f"| {row['label']} | {per_seed} | {statistics.mean(aucs):.3f} ({sd:.3f}) | "
            f"{statistics.mean(aucs) - scratch:+.3f} | {r0['best_epoch']} of {r0['epochs']} | {r0['seconds']:.0f} |"
        )
    return lines


def _verdicts(rows: list[dict]) -> list[str]:
    """`meddx compare` per seed: SimCLR (all blocks) against scratch and against supervised transfer."""
    by = {row["label"]: row["runs"] for row in rows}
    ssl, scratch, sup = by[VARIANTS[3][0]], by[VARIANTS[0][0]], by[VARIANTS[1][0]]
    out = []
    for peer, runs in (("scratch", scratch), ("supervised transfer", sup)):
        parts = [
            f"seed {s}: {verdict(a['path'], b['path'], ('SimCLR', peer))}" for s, (a, b) in enumerate(zip(ssl, runs))
        ]
        out.append(f"  - SimCLR (all blocks) against {peer}: " + "; ".join(parts))
    return out


def render(args: dict, minutes: float, ssl: dict, ssl_minutes: float, source: dict, source_minutes: float,
           results: dict, planned: list) -> None:  # fmt: skip
    """The tables and the verdicts, into docs/benchmarks.md."""
    a = argparse.Namespace(**args)
    sources = ", ".join(Path(s).name for s in ssl["sources"])
    cmd = (f"`.venv/bin/python bench/pretrain.py --seeds {a.seeds} --ssl-epochs {a.ssl_epochs} --source-epochs "
           f"{a.source_epochs} --target-epochs {a.target_epochs}"
           + (f" --plan-budget {a.plan_budget:g}`" if a.plan_budget else "`"))  # fmt: skip
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {torch.get_num_threads()} threads, by {cmd} "
        f"({minutes:.0f} min in all, one run). Every row: the small CNN, one channel, each image z-scored, plan off, "
        f"{a.target_epochs} epochs at most with early stopping on val loss, the same split for every seed (seeds "
        "change initialisation and order only). AUC on each target's own test split, patient-bootstrap 95% interval.",
        "",
        f"- SimCLR pretraining: {ssl['images']:,} unlabelled chest X-rays at 64 px ({sources}), {ssl['epochs']} "
        f"epochs, {ssl_minutes:.1f} min; val NT-Xent {ssl['initial_val_ntxent']:.3f} before, "
        f"{ssl['final_val_ntxent']:.3f} after.",
        f"- Supervised source: Kermany pneumonia labels, 64 px, {source['epochs']} epochs, {source_minutes:.1f} min, "
        f"its own test AUC {source['auc']:.3f}.",
    ]
    for key, rows in results.items():
        r0 = rows[0]["runs"][0]
        lines += ["", f"**{key}** (test set {r0['n_test']} images, positive class `{r0['positive']}`)", ""]
        lines += _variant_lines(rows) + ["", "Which won:"] + _verdicts(rows)
    if planned:
        lines += ["", f"**The README's path on nih64, the plan on, {a.plan_budget:g}-minute budget** (one seed)", "",
                  "| run | test ROC AUC (95% CI) | minutes | what the plan chose |", "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['label']} | {r['auc']:.3f} ({r['lo']:.3f}-{r['hi']:.3f}) | {r['minutes']:.1f} | {r['chose']} |"
                  for r in planned]  # fmt: skip
        lines.append(f"- {verdict(planned[1]['path'], planned[0]['path'], ('SimCLR', 'scratch'))}")
    lines.append("- 'A real difference': the paired 95% interval of the AUC difference excludes 0.")
    body = "\n".join(lines)
    print(body)
    print(
        f"wrote {write_section('pretrain', 'Self-supervised pretraining: SimCLR against scratch and transfer', body)}"
    )


if __name__ == "__main__":
    main()
