"""First evaluation of a run: per-label test metrics of the model beside the prior baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from meddx.train.run import Run

SCHEMA = "meddx.metrics/1"
EPS = 1e-15


def mlogloss(y: np.ndarray, p: np.ndarray) -> float:
    """Binary cross-entropy averaged over labels, then samples, probabilities clipped (computed in float64)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def label_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """ROC AUC, PR AUC, log loss, Brier and accuracy at a threshold for one label; None where undefined."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": {"value": float(roc_auc_score(y, p)) if both else None},
        "pr_auc": {"value": float(average_precision_score(y, p)) if both else None},
        "log_loss": {"value": mlogloss(y, p)},
        "brier": {"value": float(brier_score_loss(y, p))},
        "accuracy": {"value": float(np.mean((p >= threshold) == (y == 1)))},
        "prevalence": {"value": float(y.mean())},
    }


def _block(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict:
    per = {n: label_metrics(y[:, j], p[:, j]) for j, n in enumerate(names)}
    macro = {}
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy"):
        vals = [m[key]["value"] for m in per.values() if m[key]["value"] is not None]
        macro[key] = {"value": float(np.mean(vals)) if vals else None}
    return {"per_label": per, "macro": macro}


def evaluate_run(run: Run | str | Path, splits: tuple[str, ...] = ("val", "test")) -> dict:
    """Compute metrics.json for the run's saved predictions, with the prior baseline, and write report.md."""
    run = run if isinstance(run, Run) else Run(run)
    names = run.label_names
    split_table = pd.read_csv(run.path / "split.csv", dtype={"id": str, "patient_id": str})
    prior = split_table.loc[split_table["split"] == "train", names].to_numpy(np.float64).mean(0)
    result = {"schema": SCHEMA, "task": run.task, "labels": names, "splits": {}}
    for split in splits:
        if not (run.path / "predictions" / f"{split}.csv").is_file():
            continue
        df = run.predictions(split)
        y = df[names].to_numpy(np.float64)
        p = df[[f"p_{n}" for n in names]].to_numpy(np.float64)
        result["splits"][split] = {
            "n_samples": int(len(df)),
            "n_patients": int(df["patient_id"].nunique()),
            "positives": {n: int(y[:, j].sum()) for j, n in enumerate(names)},
            "model": _block(y, p, names),
            "baselines": {"prior": _block(y, np.broadcast_to(prior, y.shape), names)},
        }
    (run.path / "metrics.json").write_text(json.dumps(result, indent=2))
    (run.path / "report.md").write_text(render_markdown(run, result))
    return result


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def render_markdown(run: Run, metrics: dict) -> str:
    """A first, plain report: data, leakage check, model and per-label test metrics beside the prior."""
    info = run.data_info
    training = json.loads((run.path / "training.json").read_text()) if (run.path / "training.json").is_file() else {}
    lines = [
        f"# meddx run `{run.path.name}`", "",
        f"- data: `{info['origin']}` ({info['task']}, labels: {', '.join(info['label_names'])})",
        f"- model: `{run.config.model.name}`, input {run.preprocess.channels} x {run.preprocess.image_size[0]} x "
        f"{run.preprocess.image_size[1]}, normalisation {run.preprocess.normalize}",
        f"- training: best epoch {training.get('best_epoch')}, {training.get('epochs_run')} epochs, "
        f"{training.get('seconds')} s, best val loss {_fmt(training.get('best_val_loss'))}",
        "", "## Data and splits", "", "| split | samples | patients |", "|---|---|---|",
    ]
    lines += [f"| {s} | {v['samples']} | {v['patients']} |" for s, v in info["sizes"].items()]
    leak = info["leakage"]
    lines += ["", "Leakage check: " + ("passed" if leak["ok"] else "FOUND LEAKAGE (see data.json)")
              + (" after: " + "; ".join(leak["actions"]) if leak.get("actions") else ""), ""]
    lines += [f"- {n}" for n in info.get("notes", [])]
    for split, block in metrics["splits"].items():
        lines += [
            "", f"## {split} split ({block['n_samples']} samples, {block['n_patients']} patients)", "",
            "| label | positives | ROC AUC | prior AUC | PR AUC | prior PR AUC | log loss | prior log loss | accuracy@0.5 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name in metrics["labels"]:
            m, b = block["model"]["per_label"][name], block["baselines"]["prior"]["per_label"][name]
            lines.append(
                f"| {name} | {block['positives'][name]} | {_fmt(m['roc_auc']['value'])} | {_fmt(b['roc_auc']['value'])} | "
                f"{_fmt(m['pr_auc']['value'])} | {_fmt(b['pr_auc']['value'])} | {_fmt(m['log_loss']['value'])} | "
                f"{_fmt(b['log_loss']['value'])} | {_fmt(m['accuracy']['value'])} |"
            )
        if len(metrics["labels"]) > 1:
            mm, bm = block["model"]["macro"], block["baselines"]["prior"]["macro"]
            lines.append(f"| macro | | {_fmt(mm['roc_auc']['value'])} | {_fmt(bm['roc_auc']['value'])} | "
                         f"{_fmt(mm['pr_auc']['value'])} | {_fmt(bm['pr_auc']['value'])} | {_fmt(mm['log_loss']['value'])} | "
                         f"{_fmt(bm['log_loss']['value'])} | {_fmt(mm['accuracy']['value'])} |")
    lines += ["", "The prior baseline predicts each label's training prevalence for every sample.", ""]
    return "\n".join(lines)
