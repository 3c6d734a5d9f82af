"""The model card of a package: data, splits, figures with intervals (the run's test split and every other data set
it was evaluated on), intended use and limits, and how to run the file without meddx."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meddx.errors import MeddxError
from meddx.evaluation.report import overlap_warnings
from meddx.export.snippet import SNIPPET
from meddx.run import ENSEMBLE, PREDICTIONS, Run, read_json


def _fig(fig: dict | None) -> str:
    if not fig or fig.get("value") is None:
        return "n/a"
    if "ci_none" in fig:
        return f"{fig['value']:.3f} (no interval: {fig['ci_none']})"
    return f"{fig['value']:.3f}" + (f" (95% CI {fig['ci_low']:.3f}-{fig['ci_high']:.3f})" if "ci_low" in fig else "")


def caveats(metrics: dict) -> list[str]:
    """What a user of the model must know before its numbers, from its own test split: a collapsed model, labels it
    does not beat the prior on (plain sentences; none when it is fine)."""
    if not metrics:
        return []
    out, per_label = [], metrics["model"]["per_label"]
    split = metrics.get("split", "test")
    if (metrics.get("collapse", {}).get("evaluation") or {}).get("collapsed"):
        out.append(f"on its {split} split the model gave (nearly) the same output for every scan: a collapsed model")
    losers = [n for n, ok in metrics["beats_prior"].items() if not ok and per_label[n]["roc_auc"]["value"] is not None]
    if losers:
        out.append(
            f"on its {split} split the model does not beat the prior baseline (a guess from the class shares) for "
            f"{', '.join(losers)}: its outputs there may be no better than chance"
        )
    return out


UNCHECKED = "not checked: this package was exported before meddx kept a model's caveats (export it again to check)"
NOT_EVALUATED = "not checked: the model was never evaluated on held-out data (`meddx evaluate RUN` checks it)"


def held_out_caveats(run: Run) -> list[str]:
    """The caveats of a run's test split; of a `meddx cv` fold ensemble's out-of-fold predictions (it has no test
    split); NOT_EVALUATED when neither was scored (never an empty list that would read as 'checked, none')."""
    from meddx.evaluation.cv_summary import oof_losses
    from meddx.evaluation.folds import FOLD_ENSEMBLE, is_cv_folder
    from meddx.training.collapse import detect_collapse
    from meddx.training.cv import oof_arrays, read_oof

    if metrics := run.metrics("test"):
        return caveats(metrics)
    cv_dir = run.path.parent
    if run.path.name != FOLD_ENSEMBLE or not is_cv_folder(cv_dir) or not (cv_dir / "oof.csv").is_file():
        return [NOT_EVALUATED]
    frame, names = read_oof(cv_dir)
    y, p, prior_p = oof_arrays(frame, names)
    folds = frame["fold"].to_numpy() if "fold" in frame else np.zeros(len(frame), int)
    flat = [k for k in np.unique(folds) if detect_collapse(p[folds == k], names, labels=y[folds == k])["collapsed"]]
    out = [
        f"fold{k}'s model gave (nearly) the same output for every scan it held out: a collapsed model, averaged into "
        "this one"
        for k in flat
    ]
    cv = read_json(cv_dir / "cv.json")
    loss, prior = oof_losses(cv)
    if loss >= prior:
        out.append(
            f"out of fold its log loss {loss:.4f} is no better than the prior's {prior:.4f} (a guess from the class "
            "shares): its outputs may be no better than chance"
        )
    elif cv.get("task") != "multiclass" and (losers := _oof_losers(y, p, prior_p, names)):
        out.append(
            f"out of fold it does no better than the prior (a guess from the class shares) for {', '.join(losers)}: "
            "its outputs there may be no better than chance"
        )
    return out


def _oof_losers(y: np.ndarray, p: np.ndarray, prior: np.ndarray, names: list[str]) -> list[str]:
    """The labels whose out-of-fold log loss is no lower than the prior's or whose ROC AUC is 0.5 or below."""
    from meddx.evaluation.metrics import mlogloss, roc_auc

    out = []
    for j, n in enumerate(names):
        known = ~np.isnan(y[:, j])
        auc = roc_auc(y[known, j], p[known, j])[0] if known.any() else None
        worse = mlogloss(y[known, j], p[known, j]) >= mlogloss(y[known, j], prior[known, j]) if known.any() else False
        if worse or (auc is not None and auc <= 0.5):
            out.append(n)
    return out


def model_caveats(path: str | Path) -> list[str]:
    """The caveats of what `meddx predict` was given: a package's own (UNCHECKED before they were kept), else those of
    the run's test split (a `meddx cv` folder's: its fold ensemble's out-of-fold predictions)."""
    from meddx.evaluation.folds import folds_or_run

    path = Path(path)
    if (path / "labels.json").is_file():
        return read_json(path / "labels.json").get("caveats", [UNCHECKED])
    try:
        return held_out_caveats(folds_or_run(path))  # a cv folder: its fold ensemble (written or refreshed)
    except (MeddxError, OSError, ValueError, KeyError) as exc:
        return [f"not checked: the model's held-out figures could not be read ({exc})"]


def public_origin(origin: str) -> str:
    """The data's file and folder names without the folders above them: a card or a service never shows where on the
    training machine the data lived."""
    return ", ".join(Path(part).name or part for part in origin.split(", "))


def model_card(run: Run, metrics: dict, parity_result: dict) -> str:
    """A short model card: data, splits, metrics with intervals, intended use, limits, how to run the file."""
    info, prep = run.data_info, run.preprocess
    lines = [
        f"# Model card: {run.path.name}",
        "",
        "## Model",
        f"- architecture `{run.architecture()}`; "
        f"input {prep.channels} x {prep.image_size[0]} x {prep.image_size[1]}; "
        f"task {run.task}; outputs probabilities for {', '.join(run.label_names)}",
        *_members(run),
        f"- exported as {parity_result['format']}; largest difference from PyTorch on {parity_result['images']} real "
        f"{parity_result['split']} images: {parity_result['max_abs_diff']:.2e}",
        "",
        "## Data",
        f"- source `{public_origin(info['origin'])}`; leakage check {'passed' if info['leakage']['ok'] else 'FAILED'}",
    ]
    lines += [f"- {s}: {v['samples']} samples, {v['patients']} patients" for s, v in info["sizes"].items()]
    if metrics:
        op = metrics.get("operating_point", {})
        lines += [
            "",
            f"## Performance on the {metrics['split']} split",
            f"- operating point: {op.get('rule')} (chosen on validation)",
        ]
        for n in metrics["labels"]:
            m = metrics["model"]["per_label"][n]
            lines.append(
                f"- {n}: ROC AUC {_fig(m['roc_auc'])}; sensitivity {_fig(m['sensitivity'])}; "
                f"specificity {_fig(m['specificity'])}; beats the prior baseline: {metrics['beats_prior'][n]}"
            )
    lines += _cross_validation(run) + _other_data(run)
    lines += [
        "",
        "## Intended use and limits",
        "- Research and decision support only; not a medical device. Validate on data from the site where it is used.",
        "- Trained on the data above only: other scanners, modalities, ages or preprocessing may change its behaviour.",
        "- Inputs must be prepared exactly as `preprocess.json` says (channels, size, normalisation).",
        "- `input_stats.json` describes the training scans; `meddx serve` warns when an upload falls outside them "
        "(another modality, an inverted or unscaled image, a small image enlarged, colour, another aspect ratio). The "
        "check is a guard, not a guarantee: a scan within those statistics can still be unlike the training data.",
        "",
        "## Running the file without meddx",
        "numpy, Pillow and onnxruntime only, in this folder; `predict(['scan.png'])` gives meddx's probabilities "
        "(to 1e-4) for PNG and JPEG scans (DICOM and stacks: see `preprocess.json`'s window and views).",
        "```python",
        SNIPPET.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _members(run: Run) -> list[str]:
    """An ensemble's lines: each member's model, input size and weight, and how the exported input reaches them."""
    if not run.is_ensemble:
        return []
    info = read_json(run.path / ENSEMBLE)
    parts = []
    for member, weight in zip(run.members(), info.get("weights") or []):
        size = "x".join(str(v) for v in member.preprocess.image_size) if not member.is_sequence else "tokens"
        parts.append(f"{member.path.name} `{member.config.model.name}` {size} (weight {weight:.2f})")
    how = info.get("combine", "mean")
    resized = " each member resizes the input to its own size and normalises it as it was trained;" if info.get(
        "input") else ""  # fmt: skip
    return [f"- an ensemble of {len(parts)} models ({how}):{resized} {'; '.join(parts)}"]


def _cross_validation(run: Run) -> list[str]:
    """A fold ensemble's out-of-fold figures (its CV folder's cv.json): every sample scored by the fold that did not
    train on it; the deployed model is the folds' mean."""
    cv = read_json(run.path.parent / "cv.json") if run.is_ensemble else {}
    if not cv.get("baselines"):  # not a scored CV folder's fold ensemble
        return []
    m, loss = cv["model"], cv["model"].get("mlogloss", cv["model"].get("log_loss"))
    return ["", f"## Cross-validation ({cv['folds']} folds; this model is their mean)",
            f"- out of fold: mean ROC AUC {m.get('mean_roc_auc', float('nan')):.3f}; log loss {loss:.4f} (prior "
            f"{cv['baselines']['prior'].get('mlogloss', cv['baselines']['prior'].get('log_loss')):.4f})"]  # fmt: skip


def _other_data(run: Run) -> list[str]:
    """The card's lines on data from elsewhere (`meddx evaluate RUN --data OTHER`): each evaluation's data and
    figures, so a reader sees how the model did beyond its own test split."""
    lines, latest, headline = [], {}, read_json(run.path / "metrics.json").get("operating_point", {}).get("rule")
    found = [(path, read_json(path)) for path in run.path.glob("metrics-*.json")]
    found.sort(key=lambda f: (f[0].name == f"metrics-{f[1].get('split')}.json", f[0].stat().st_mtime))  # own, latest
    for _, metrics in found:  # what-ifs at another operating point, and subgroup reports, are not the figures
        if not metrics.get("subgroups") and metrics.get("operating_point", {}).get("rule") == headline:
            latest[metrics.get("split")] = metrics
    for source in sorted((run.path / PREDICTIONS).glob("*.data.json")):
        name = source.name.removesuffix(".data.json")
        metrics = latest.get(name, {})
        if not metrics.get("labels"):
            continue
        origin = public_origin(str(read_json(source).get("origin", name)))
        own = overlap_warnings(read_json(run.path / PREDICTIONS / f"{name}.leakage.json")).get("warning_own_test")
        for n in metrics["labels"]:
            m = metrics["model"]["per_label"][n]
            lines.append(f"- {name} (`{origin}`, {metrics['n_samples']} samples), {n}: ROC AUC {_fig(m['roc_auc'])}; "
                         f"sensitivity {_fig(m['sensitivity'])}; specificity {_fig(m['specificity'])}"
                         + (f" (**not external**: {own})" if own else ""))  # fmt: skip
    title = f"## Performance on other data (`meddx evaluate --data`; operating point {headline}, chosen on validation)"
    return ["", title, *lines] if lines else []
