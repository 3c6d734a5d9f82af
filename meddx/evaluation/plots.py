"""Figures of an evaluation, saved as PNG: ROC with the operating point, PR, calibration, histograms, confusion."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

MAX_PANELS = 20


def _grid(n: int, title: str):
    n = min(n, MAX_PANELS)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.4 * cols, 5.5), 3.1 * rows + 0.4), squeeze=False)
    fig.suptitle(title, fontsize=10)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def roc_figure(y, p, names, thresholds, path: Path) -> Path:
    fig, axes = _grid(len(names), "ROC (test) with the operating point chosen on validation")
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        if 0 < y[:, j].sum() < len(y):
            fpr, tpr, _ = roc_curve(y[:, j], p[:, j])
            ax.plot(fpr, tpr, lw=1.5)
            if thresholds is not None:
                pred = p[:, j] >= thresholds[j]
                sens = pred[y[:, j] == 1].mean()
                fp_rate = pred[y[:, j] == 0].mean()
                ax.plot([fp_rate], [sens], "o", color="crimson", label=f"t={thresholds[j]:.3g}")
                ax.legend(loc="lower right", fontsize=8)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(title=n, xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    return _save(fig, path)


def pr_figure(y, p, names, path: Path) -> Path:
    fig, axes = _grid(len(names), "Precision-recall (test); dashed: prevalence")
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        if y[:, j].sum() > 0:
            prec, rec, _ = precision_recall_curve(y[:, j], p[:, j])
            ax.plot(rec, prec, lw=1.5)
        ax.axhline(y[:, j].mean(), ls="--", color="grey")
        ax.set(title=n, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    return _save(fig, path)


def calibration_figure(calibration: dict, names, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for n in names[:MAX_PANELS]:
        c = calibration[n]
        ax.plot(c["mean_predicted"], c["observed"], "o-", ms=3, label=f"{n} (ECE {c['ece']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(
        title="Reliability (test)",
        xlabel="mean predicted probability",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def histogram_figure(y, p, names, thresholds, path: Path) -> Path:
    fig, axes = _grid(len(names), "Predicted probability by true label (test)")
    bins = np.linspace(0, 1, 26)
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        ax.hist(p[y[:, j] == 0, j], bins=bins, alpha=0.6, label="negative", color="tab:blue")
        ax.hist(p[y[:, j] == 1, j], bins=bins, alpha=0.6, label="positive", color="tab:orange")
        if thresholds is not None:
            ax.axvline(thresholds[j], color="crimson", lw=1)
        ax.set(title=n, xlabel="probability", ylabel="samples")
        ax.legend(fontsize=7)
    return _save(fig, path)


def confusion_figure(y, pred, names, task, path: Path) -> Path:
    if task == "multiclass":
        k = len(names)
        cm = np.zeros((k, k), dtype=int)
        np.add.at(cm, (y.argmax(1), pred.argmax(1)), 1)
        fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.1 * k + 2))
        ax.imshow(cm, cmap="Blues")
        ax.set(
            xticks=range(k),
            yticks=range(k),
            xticklabels=names,
            yticklabels=names,
            xlabel="predicted",
            ylabel="true",
            title="Confusion matrix (test, argmax)",
        )
        for i in range(k):
            for jj in range(k):
                ax.text(jj, i, cm[i, jj], ha="center", va="center")
        return _save(fig, path)
    fig, axes = _grid(len(names), "Confusion at the operating point (test)")
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        t, d = y[:, j].astype(int), pred[:, j].astype(int)
        cm = np.array([[np.sum((t == a) & (d == b)) for b in (0, 1)] for a in (0, 1)])
        ax.imshow(cm, cmap="Blues")
        for a in (0, 1):
            for b in (0, 1):
                ax.text(b, a, cm[a, b], ha="center", va="center")
        ax.set(
            title=n,
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=["neg", "pos"],
            yticklabels=["neg", "pos"],
            xlabel="predicted",
            ylabel="true",
        )
    return _save(fig, path)


def decision_figure(curves: dict, names, path: Path) -> Path:
    fig, axes = _grid(len(names), "Decision curves (test): net benefit by threshold probability")
    for ax, n in zip(axes, names[:MAX_PANELS]):
        c = curves[n]
        ax.plot(c["thresholds"], c["model"], lw=1.5, label="model")
        ax.plot(c["thresholds"], c["treat_all"], "--", color="grey", label="treat all")
        ax.axhline(0, color="black", lw=0.8, label="treat none")
        top = max(c["prevalence"], 0.01)
        ax.set(title=n, xlabel="threshold probability", ylabel="net benefit", xlim=(0, 1), ylim=(-0.1 * top, 1.1 * top))
        ax.legend(loc="upper right", fontsize=7)
    return _save(fig, path)


def write_figures(
    y, p, pred, names, task, thresholds, calibration: dict, folder: Path, curves: dict | None = None
) -> dict[str, Path]:
    """All figures of one evaluation into folder; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"decision": decision_figure(curves, names, folder / "decision.png")} if curves else {}
    return {
        "roc": roc_figure(y, p, names, thresholds, folder / "roc.png"),
        "pr": pr_figure(y, p, names, folder / "pr.png"),
        "calibration": calibration_figure(calibration, names, folder / "calibration.png"),
        "histograms": histogram_figure(y, p, names, thresholds, folder / "histograms.png"),
        "confusion": confusion_figure(y, pred, names, task, folder / "confusion.png"),
    } | extra
