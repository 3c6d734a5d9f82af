"""Figures of an evaluation, saved as PNG: ROC with the operating point, PR, calibration, histograms, confusion."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402

from meddx.atomic import staged_file  # noqa: E402
from meddx.evaluation.fused import chunk_sizes, count_chunks, patient_index  # noqa: E402

MAX_PANELS = 30  # Tianchi round 2 has 29 labels
BAND_RESAMPLES = 200
FPR_GRID = np.linspace(0, 1, 101)


def _grid(n: int, title: str):
    """Panels at fixed margins in inches (room for two title lines and the axis labels): matplotlib's constrained
    layout measured every text of every panel and took half the time of a 17-label figure."""
    n = min(n, MAX_PANELS)
    cols = min(4 if n <= 8 else 6, n)
    rows = math.ceil(n / cols)
    width, height = max(3.2 * cols, 6.0), 3.0 * rows + 0.5
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    side, right, bottom, top = 0.75, 0.2, 0.55, 0.95  # inches: y labels, edge, x labels, suptitle + two title lines
    panel_w = (width - side - right - side * (cols - 1)) / cols
    panel_h = (height - top - bottom - top * (rows - 1)) / rows
    fig.subplots_adjust(
        left=side / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
        wspace=side / panel_w, hspace=top / panel_h,
    )  # fmt: skip
    fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _title(name: str) -> str:
    return name if len(name) <= 24 else name[:22] + "..."


def _save(fig, path: Path) -> Path:
    with staged_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _resamples(n: int, patients, seed: int = 0) -> Iterator[np.ndarray]:
    """Sample indices of BAND_RESAMPLES patient-level bootstrap draws (`fused.count_chunks`, as the evaluation's), one
    at a time from chunks of bounded memory."""
    inverse, n_patients = patient_index(np.arange(n) if patients is None else np.asarray(patients))
    for counts in count_chunks(n_patients, seed, chunk_sizes(BAND_RESAMPLES, n_patients)):
        for row in counts:
            yield np.repeat(np.arange(n), row[inverse])


def _roc_band(y: np.ndarray, p: np.ndarray, draws: Iterator[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """2.5 and 97.5 percentiles of sensitivity over FPR_GRID across the bootstrap draws. Each draw's ROC curve comes
    from cumulative counts over the scores sorted once (`roc_curve` on every draw took 4 of a 17-label report's 9 s)."""
    order = np.argsort(-p, kind="stable")
    positive = y[order].astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(p[order])), len(p) - 1]  # last sample of each run of tied scores
    curves = []
    for idx in draws:
        counts = np.bincount(idx, minlength=len(p))[order]
        tp, fp = np.cumsum(counts * positive)[ends], np.cumsum(counts * (1 - positive))[ends]
        if tp[-1] > 0 and fp[-1] > 0:
            curves.append(np.interp(FPR_GRID, np.r_[0, fp / fp[-1]], np.r_[0, tp / tp[-1]]))
    return np.percentile(curves, [2.5, 97.5], axis=0) if curves else (FPR_GRID * np.nan, FPR_GRID * np.nan)


def roc_figure(y, p, names, thresholds, path: Path, patients=None, aucs: dict | None = None, split="test") -> Path:
    """Per label: the ROC curve, its patient-bootstrap band, the operating point; the title's AUC and interval are
    the evaluation's (`aucs`: label -> metrics.json's roc_auc) so the figure and the tables agree."""
    marked = "; red: operating point (val)" if thresholds is not None else " (argmax: no threshold to mark)"
    fig, axes = _grid(len(names), f"ROC ({split}), pointwise 95% band{marked}")
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        title = _title(n)
        k = ~np.isnan(y[:, j])  # unknown labels left out
        yj, pj = y[k, j], p[k, j]
        if 0 < yj.sum() < len(yj):
            draws = _resamples(len(yj), None if patients is None else np.asarray(patients)[k])
            fpr, tpr, _ = roc_curve(yj, pj)
            lo, hi = _roc_band(yj, pj, draws)
            ax.fill_between(FPR_GRID, lo, hi, color="tab:blue", alpha=0.2, lw=0)
            ax.plot(fpr, tpr, lw=1.5)
            auc = (aucs or {}).get(n) or {"value": roc_auc_score(yj, pj)}
            ci = f" ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})" if auc.get("ci_low") is not None else ""
            title += f"\nAUC {auc['value']:.3f}{ci}"
            if thresholds is not None:
                pred = pj >= thresholds[j]
                point = ([pred[yj == 0].mean()], [pred[yj == 1].mean()])
                ax.plot(*point, "o", color="crimson", label=f"t={thresholds[j]:.3g}")
                ax.legend(loc="lower right", fontsize=8)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def pr_figure(y, p, names, path: Path, split: str = "test") -> Path:
    fig, axes = _grid(len(names), f"Precision-recall ({split}); dashed: prevalence")
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        title = _title(n)
        k = ~np.isnan(y[:, j])
        yj, pj = y[k, j], p[k, j]
        if 0 < yj.sum() < len(yj):  # without negatives precision is 1 whatever the model: undefined, as in the table
            prec, rec, _ = precision_recall_curve(yj, pj)
            ax.plot(rec, prec, lw=1.5)
            title += f"\nPR AUC {average_precision_score(yj, pj):.3f}"
        ax.axhline(yj.mean() if len(yj) else 0, ls="--", color="grey")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def calibration_figure(calibration: dict, names, path: Path, split: str = "test") -> Path:
    """One small panel per label (17 curves in one axis were a tangle), point size by bin count, ECE in the title."""
    fig, axes = _grid(len(names), f"Reliability ({split}); dot size: samples in the bin")
    for ax, n in zip(axes, names[:MAX_PANELS]):
        c = calibration[n]
        sizes = 8 + 60 * np.asarray(c["count"]) / max(max(c["count"], default=1), 1)
        ax.plot(c["mean_predicted"], c["observed"], "-", lw=1, color="tab:blue")
        ax.scatter(c["mean_predicted"], c["observed"], s=sizes, color="tab:blue", zorder=3)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ci = " ({:.3f}-{:.3f})".format(*c["ece_ci"]) if "ece_ci" in c else ""
        ax.set(xlabel="predicted", ylabel="observed", xlim=(0, 1), ylim=(0, 1))
        ax.set_title(f"{_title(n)}\nECE {c['ece']:.3f}{ci}", fontsize=9)
    return _save(fig, path)


def histogram_figure(y, p, names, thresholds, path: Path, split: str = "test") -> Path:
    key = "blue negative, orange positive" + (", red the threshold" if thresholds is not None else "")
    fig, axes = _grid(len(names), f"Scores by true label ({split})\n{key}")  # a legend per panel hid bars
    bins = np.linspace(0, 1, 26)
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        ax.hist(p[y[:, j] == 0, j], bins=bins, alpha=0.6, color="tab:blue")  # NaN: neither
        ax.hist(p[y[:, j] == 1, j], bins=bins, alpha=0.6, color="tab:orange")
        if thresholds is not None:
            ax.axvline(thresholds[j], color="crimson", lw=1)
        ax.set(title=n, xlabel="probability", ylabel="samples")
    return _save(fig, path)


def _counts(ax, cm: np.ndarray) -> None:
    """Each cell's count, white on dark cells and black on light ones (black on navy was unreadable)."""
    top = max(int(cm.max()), 1)
    for (a, b), v in np.ndenumerate(cm):
        ax.text(b, a, str(v), ha="center", va="center", fontsize=11, color="white" if v > top / 2 else "black")


def confusion_figure(y, pred, names, task, path: Path, split: str = "test", negative: str | None = None) -> Path:
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
            title=f"Confusion matrix ({split}, argmax)",
        )
        _counts(ax, cm)
        return _save(fig, path)
    fig, axes = _grid(len(names), f"Confusion at the operating point ({split})")
    ticks = [negative, names[0]] if task == "binary" and negative else ["neg", "pos"]  # a binary run's two classes
    for j, (ax, n) in enumerate(zip(axes, names[:MAX_PANELS])):
        k = ~np.isnan(y[:, j])
        t, d = y[k, j].astype(int), pred[k, j].astype(int)
        cm = np.array([[np.sum((t == a) & (d == b)) for b in (0, 1)] for a in (0, 1)])
        ax.imshow(cm, cmap="Blues")
        _counts(ax, cm)
        ax.set(
            title=_title(n),
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=ticks,
            yticklabels=ticks,
            xlabel="predicted",
            ylabel="true",
        )
    return _save(fig, path)


def decision_figure(curves: dict, names, path: Path, split: str = "test") -> Path:
    fig, axes = _grid(len(names), f"Decision curves ({split}): net benefit")
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
    y,
    p,
    pred,
    names,
    task,
    thresholds,
    calibration: dict,
    folder: Path,
    curves: dict | None = None,
    patients=None,
    aucs: dict | None = None,
    split: str = "test",
    negative: str | None = None,
) -> dict[str, Path]:
    """All figures of one evaluation into folder; returns name -> path. Unknown labels (NaN) count as neither class
    (drawn as negatives where a figure needs every sample: the confusion matrix and histograms leave them out);
    `negative`: a binary run's other class, for the confusion matrix's axes."""
    folder.mkdir(parents=True, exist_ok=True)
    y = np.where(np.isnan(y), np.nan, (np.nan_to_num(y) >= 0.5).astype(np.float64))
    extra = {"decision": decision_figure(curves, names, folder / "decision.png", split)} if curves else {}
    return {
        "roc": roc_figure(y, p, names, thresholds, folder / "roc.png", patients, aucs, split),
        "pr": pr_figure(y, p, names, folder / "pr.png", split),
        "calibration": calibration_figure(calibration, names, folder / "calibration.png", split),
        "histograms": histogram_figure(y, p, names, thresholds, folder / "histograms.png", split),
        "confusion": confusion_figure(y, pred, names, task, folder / "confusion.png", split, negative),
    } | extra


CAPTIONS = {
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "calibration": "Reliability (calibration)",
    "histograms": "Scores by true class",
    "confusion": "Confusion at the operating point",
    "decision": "Decision curve (net benefit)",
}


def figure_list(figures: dict[str, Path], result: dict) -> list[dict]:
    """Figures embedded for the HTML report (with many labels, one per row at full width) and linked for Markdown,
    each with a caption that states its headline figure."""
    wide = len(result["labels"]) > 4
    out = []
    for key, path in figures.items():
        caption = CAPTIONS.get(key, key) + _headline(key, result)
        embed = base64.b64encode(path.read_bytes()).decode()
        out.append(
            {"key": key, "caption": caption, "path": f"{path.parent.name}/{path.name}", "base64": embed, "wide": wide}
        )
    return out


def _headline(key: str, result: dict) -> str:
    """': ROC AUC 0.981 (0.975-0.987)' for the ROC and PR figures (macro over labels where there are several)."""
    metric = {"roc": ("roc_auc", "ROC AUC"), "pr": ("pr_auc", "PR AUC")}.get(key)
    if metric is None:
        return ""
    names = result["labels"]
    figure = (result["model"]["per_label"][names[0]] if len(names) == 1 else result["model"]["macro"]).get(metric[0])
    if not figure or figure.get("value") is None:
        return ""
    ci = f" ({figure['ci_low']:.3f}-{figure['ci_high']:.3f})" if figure.get("ci_low") is not None else ""
    return f": {'macro ' if len(names) > 1 else ''}{metric[1]} {figure['value']:.3f}{ci}"
