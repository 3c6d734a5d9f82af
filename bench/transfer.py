"""Transfer learning on real data: pretrain on a large chest X-ray set, fine-tune on small targets at several depths.

Peer: the same model trained from scratch on the target, in the same run. Sources and targets:
- Kermany pediatric pneumonia X-rays (5,216, resized to 64 px) -> NIH ChestX-ray14 64 px normal vs abnormal (800);
- PneumoniaMNIST (bundled, 28 px) -> BreastMNIST (780, 28 px).
Every target run is evaluated by meddx on the target's own test split (AUC with a patient-bootstrap 95% interval).

    .venv/bin/python bench/transfer.py [--seeds 1] [--source-epochs 8] [--target-epochs 15] [--out /tmp/transfer-bench]

The run folders stay under --out, so the "which won" lines (`meddx compare` on the same test patients) can be
rendered again with --from-json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import meddx

sys.path.insert(0, str(Path(__file__).parent))
from _compare import verdict  # noqa: E402
from _docs import write_section  # noqa: E402

DATA = Path(os.environ.get("MEDDX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
# the NIH set has train/valid folders only; its 67-image carved test split is too small, so it is split anew by patient
NIH_SPLIT = {"use_official": False, "ratios": (0.6, 0.15, 0.25)}
VARIANTS = [  # (row name, finetune_depth, backbone_lr_mult, initialise from the source)
    ("from scratch (peer)", "all", 1.0, False),
    ("head only (depth 0)", 0, 1.0, True),
    ("last block (depth 1)", 1, 1.0, True),
    ("all blocks", "all", 1.0, True),
    ("all blocks, backbone lr x0.1", "all", 0.1, True),
]


def train(out: str, name: str, data: dict, split: dict | None = None, **train_cfg) -> dict:
    cfg = {
        "name": name,
        "output_dir": out,
        "data": data,
        "split": {"on_duplicate_images": "drop_from_train", **(split or {})},
        "model": {"name": "small_cnn"},
        "train": {"batch_size": 64, "progress_bar": False, "diagnostics": False, **train_cfg},
        "evaluate": {"bootstrap": 2000},
        "plan": {"enabled": False},  # a controlled comparison: the same fixed recipe in every row
    }
    run = meddx.train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    t = json.loads((run.path / "training.json").read_text())
    auc = m["model"]["per_label"][m["labels"][0]]["roc_auc"]
    return {
        "path": str(run.path),
        "auc": auc["value"],
        "lo": auc.get("ci_low"),
        "hi": auc.get("ci_high"),
        "n_test": m["n_samples"],
        "seconds": t["seconds"],
        "best_epoch": t["best_epoch"],
        "epochs": t["epochs_run"],
        "trainable": t["trainable_parameters"],
        "positive": m["labels"][0],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--source-epochs", type=int, default=8)
    ap.add_argument("--target-epochs", type=int, default=15)
    ap.add_argument("--source-fraction", type=float, default=0.3, help="share of Kermany train batches per epoch")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "transfer-bench"), help="run folders")
    ap.add_argument("--from-json", help="re-render the table from the results a previous run saved")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        return render(saved["args"], saved["minutes"], saved["results"])
    started = time.perf_counter()
    pairs = [
        (
            "Kermany pneumonia (64 px)",
            {"path": str(DATA / "chest_xray_pneumonia_224"), "image_size": 64, "channels": 1},
            {"limit_train_batches": args.source_fraction},
            "NIH ChestX-ray14 normal vs abnormal (64 px)",
            {"path": str(DATA / "nih_chestxray14_64px_binary"), "channels": 1, "patient_regex": r"^(\d{8})_"},
            NIH_SPLIT,
        ),
        (
            "PneumoniaMNIST (28 px)",
            {"path": "pneumoniamnist"},
            {},
            "BreastMNIST (28 px)",
            {"path": str(DATA / "medmnist" / "breastmnist.npz")},
            None,
        ),
    ]
    results: list[tuple[str, str, dict, list[dict]]] = []
    shutil.rmtree(args.out, ignore_errors=True)
    out = args.out
    for src_name, src_data, src_extra, tgt_name, tgt_data, tgt_split in pairs:
        src = train(out, f"src-{len(results)}", src_data, max_epochs=args.source_epochs, **src_extra)
        print(f"source {src_name}: {src}", flush=True)
        rows = []
        for k, (label, depth, mult, init) in enumerate(VARIANTS):
            per_seed = []
            for seed in range(args.seeds):
                r = train(
                    out,
                    f"tgt-{len(results)}-v{k}-s{seed}",
                    tgt_data,
                    tgt_split,
                    max_epochs=args.target_epochs,
                    seed=seed,
                    finetune_depth=depth,
                    backbone_lr_mult=mult,
                    init_from=src["path"] if init else None,
                )
                print(f"  {tgt_name} / {label} / seed {seed}: {r}", flush=True)
                per_seed.append(r)
            rows.append({"label": label, "runs": per_seed})
        results.append((src_name, tgt_name, src, rows))
    minutes = (time.perf_counter() - started) / 60
    saved = Path(tempfile.gettempdir()) / "meddx_bench_transfer.json"
    saved.write_text(json.dumps({"args": vars(args), "minutes": minutes, "results": results}, indent=1))
    print(f"results saved in {saved}")
    render(vars(args), minutes, results)


def render(args: dict, minutes: float, results: list) -> None:
    """The table and the note on which depth won, into docs/benchmarks.md."""
    args = argparse.Namespace(**args)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, by `.venv/bin/python bench/transfer.py --seeds {args.seeds} --source-epochs "
        f"{args.source_epochs} --target-epochs {args.target_epochs} --source-fraction {args.source_fraction}` "
        f"({minutes:.0f} min, all rows in one run). Model `small_cnn` (3 blocks + head) everywhere; target runs "
        f"{args.target_epochs} epochs at most with early stopping; AUC on each target's own test split with a "
        "patient-bootstrap 95% interval (2,000 resamples); the peer is the same model trained from scratch in the "
        "same run. Depth N = the last N blocks and the head train (`meddx model-info small_cnn`).",
        "",
    ]
    summary = []
    for src_name, tgt_name, src, rows in results:
        lines += [
            f"**{src_name} -> {tgt_name}** (source test AUC {src['auc']:.3f}; target test set "
            f"{rows[0]['runs'][0]['n_test']} images, positive class `{rows[0]['runs'][0]['positive']}`)",
            "",
            "| variant | test ROC AUC (95% CI), seed 0 | mean AUC minus scratch | mean AUC / scratch | trainable params | best epoch | fit s |",
            "|---|---|---|---|---|---|---|",
        ]
        scratch = [r["auc"] for r in rows[0]["runs"]]
        for row in rows:
            r0 = row["runs"][0]
            aucs = [r["auc"] for r in row["runs"]]
            mean, base = sum(aucs) / len(aucs), sum(scratch) / len(scratch)
            seeds = f"; mean of {len(aucs)} seeds {mean:.3f}" if len(aucs) > 1 else ""
            lines.append(
                f"| {row['label']} | {r0['auc']:.3f} ({r0['lo']:.3f}-{r0['hi']:.3f}){seeds} | {mean - base:+.3f} | "
                f"{mean / base:.3f} | {r0['trainable']:,} | {r0['best_epoch']} of {r0['epochs']} | {r0['seconds']:.0f} |"
            )
        best = max(rows, key=lambda row: sum(r["auc"] for r in row["runs"]) / len(row["runs"]))
        gain = (sum(r["auc"] for r in best["runs"]) - sum(scratch)) / len(scratch)
        verdicts = "; ".join(
            f"seed {seed}: {verdict(b.get('path'), s.get('path'), ('transfer', 'scratch'))}"
            for seed, (b, s) in enumerate(zip(best["runs"], rows[0]["runs"]))
        )
        summary.append(
            f"- {tgt_name}: best **{best['label']}**, {gain:+.3f} mean AUC against scratch. `meddx compare` of the two "
            f"on the same test patients, {verdicts}."
        )
        lines.append("")
    lines += (
        ["Which depth won:"]
        + summary
        + [
            "- 'A real difference' means the paired 95% interval of the AUC difference (the same patient resamples for "
            "both runs) excludes 0; these test sets are small."
        ]
    )
    body = "\n".join(lines)
    print(body)
    print(f"wrote {write_section('transfer', 'Transfer learning: scratch vs head only vs last block vs all', body)}")


if __name__ == "__main__":
    main()
