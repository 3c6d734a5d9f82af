"""The Tianchi 2021 report competition in one module: its score (mlogloss; round 2: 0.6 x regions + 0.4 x types), the
submission writer and checker, fold ensembles and blends of CV folders. It uses the generic pieces (the `|,|` reader
in `data`, k-fold CV in `training`, metrics and ensemble selection in `evaluation`) and registers its score table
with every report of a token-sequence run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from meddx.atomic import write_text
from meddx.data.reports import SEP, read_tianchi
from meddx.errors import ConfigError, DataError
from meddx.evaluation import metrics as M
from meddx.evaluation.calibration import apply_platt, fit_platt
from meddx.evaluation.ensemble import greedy_weights
from meddx.evaluation.scores import Competition, pooled_scores, register_competition
from meddx.run import Run
from meddx.training.cv import CV, read_oof

REGION_SHARE = 0.6  # round 2: score = 0.6 x (1 - region mlogloss) + 0.4 x (1 - type mlogloss)


def tianchi_scores(
    y: np.ndarray, p: np.ndarray, label_names: list[str], prior: np.ndarray | None = None, seed: int = 0
) -> dict:
    """mlogloss (competition formula), score = 1 - mlogloss (round 2: regions and types apart), per-label AUC, exact
    match at 0.5, and the all-zero, prior and uniform-random baselines on the same rows."""
    return pooled_scores(y, p, label_names, prior, seed, lambda y_, q: round_score(y_, q, label_names))


def round_score(y: np.ndarray, p: np.ndarray, label_names: list[str]) -> dict:
    """score = 1 - mlogloss; round 2: regions and types apart, 0.6 x (1 - regions) + 0.4 x (1 - types)."""
    regions = [j for j, n in enumerate(label_names) if not n.startswith("type_")]
    types = [j for j, n in enumerate(label_names) if n.startswith("type_")]
    if not (regions and types):
        return {"score": 1 - M.mlogloss(y, p)}
    r, t = M.mlogloss(y[:, regions], p[:, regions]), M.mlogloss(y[:, types], p[:, types])
    return {"regions_mlogloss": r, "types_mlogloss": t, "score": REGION_SHARE * (1 - r) + (1 - REGION_SHARE) * (1 - t)}


def _table_keys(scores: dict) -> list[str]:
    return ["mlogloss", "score"] + (
        ["regions_mlogloss", "types_mlogloss"] if "regions_mlogloss" in scores["model"] else []
    )


register_competition(
    Competition(
        name="tianchi",
        applies=lambda run: run.is_sequence,
        score=tianchi_scores,
        title="Competition score",
        note="mlogloss as the competition computes it (BCE averaged over labels, then samples; clipped at 1e-15); "
        "score = 1 - mlogloss (round 2: 0.6 x regions + 0.4 x types).",
        keys=_table_keys,
    )
)


def predict_file(source: str | Path, data: str | Path) -> tuple[list[str], np.ndarray]:
    """Report ids and probabilities for a `|,|` file from one run folder or a CV folder (fold ensemble: mean)."""
    src = Path(source)
    runs = [Run(src / r) for r in json.loads((src / CV).read_text())["runs"]] if (src / CV).is_file() else [Run(src)]
    if not runs[0].is_sequence:
        raise ConfigError(f"{src}: not a token-sequence run (no vocab.json); submissions are for the Tianchi track")
    records = read_tianchi(data, require_labels=False).records
    return [r.id for r in records], np.mean([r.predict_proba(records) for r in runs], axis=0)


def _oof_matrices(sources: list[str | Path]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[str]]:
    """The truth, each CV folder's out-of-fold probabilities (rows aligned by report id: the folders must cover the
    same reports), each row's fold and the label names."""
    read = [read_oof(src) for src in sources]
    frames = [frame.sort_values("id", ignore_index=True) for frame, _ in read]
    names = read[0][1]
    for src, f, (_, own) in zip(sources[1:], frames[1:], read[1:]):
        if own != names:  # round 1's 17 regions beside round 2's 29 labels: ids 0..N-1 match all the same
            raise ConfigError(f"{src}: its labels ({len(own)}) are not {sources[0]}'s ({len(names)}); blend CV runs "
                              "of one task")  # fmt: skip
        if not f["id"].equals(frames[0]["id"]) or not f[names].equals(frames[0][names]):
            raise ConfigError(
                f"{src}: its out-of-fold reports or their labels differ from {sources[0]}'s; blend CV runs of the same "
                "data"
            )
    probs = [f[[f"p_{n}" for n in names]].to_numpy(np.float64) for f in frames]
    return frames[0][names].to_numpy(np.float64), probs, frames[0]["fold"].to_numpy(), names


def label_groups(names: list[str]) -> list[np.ndarray]:
    """The label columns calibrated together: round 2's regions and types apart, else all in one group."""
    types = np.array([n.startswith("type_") for n in names])
    return [~types, types] if types.any() and not types.all() else [np.ones(len(names), bool)]


def calibrate_oof(y: np.ndarray, p: np.ndarray, folds: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Cross-fitted Platt scaling: fold k's out-of-fold probabilities scaled by slopes fitted on the other folds."""
    if len(np.unique(folds)) < 2:
        raise ConfigError("Platt scaling out of fold needs out-of-fold rows of 2 or more folds")
    out = p.copy()
    for k in np.unique(folds):
        rows = folds == k
        out[rows] = apply_platt(p[rows], groups, fit_platt(y[~rows], p[~rows], groups))
    return out


def blend_weights(sources: list[str | Path]) -> list[float]:
    """Weights for blending `meddx cv` folders, chosen by greedy ensemble selection on their out-of-fold predictions
    (the competition's test set stays unseen)."""
    y, probs, _, _ = _oof_matrices(sources)
    return greedy_weights(probs, y, "multilabel").tolist()


def blend_oof(sources: list[str | Path]) -> dict:
    """Out-of-fold blend of CV folders: weights, each folder's own out-of-fold score and mlogloss, the blend's, and the
    blend's after Platt scaling (cross-fitted: fold k scaled by slopes fitted on the other folds)."""
    y, probs, folds, names = _oof_matrices(sources)
    weights = greedy_weights(probs, y, "multilabel").tolist()
    blended = sum(w * p for w, p in zip(weights, probs))
    groups, several = label_groups(names), len(np.unique(folds)) > 1
    calibrated = calibrate_oof(y, blended, folds, groups) if several else None
    return {
        "weights": weights,
        "folders": [competition_score(y, p, names) for p in probs],
        "blend": competition_score(y, blended, names),
        "calibrated": None if calibrated is None else competition_score(y, calibrated, names),
        "platt": fit_platt(y, blended, groups),
    }


def competition_score(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict:
    """mlogloss and the competition's score (round 2: 0.6 x regions + 0.4 x types)."""
    return {"mlogloss": M.mlogloss(y, p), **round_score(y, p, names)}


def oof_platt(sources: list[str | Path], weights: list[float]) -> tuple[list[np.ndarray], list[list[float]]]:
    """The label groups and their Platt slopes and intercepts for a blend with `weights`, fitted on the CV folders'
    out-of-fold predictions."""
    y, probs, _, names = _oof_matrices(sources)
    groups = label_groups(names)
    return groups, fit_platt(y, sum(w * p for w, p in zip(weights, probs)), groups)


def blend_file(
    sources: list[str | Path], data: str | Path, weights: str | list[float] = "equal"
) -> tuple[list[str], np.ndarray]:
    """Report ids and probabilities of run or CV folders blended with weights "equal", "oof" (blend_weights) or
    given."""
    w = resolve_weights(sources, weights)
    parts = [predict_file(s, data) for s in sources]
    for source, (_, p) in zip(sources[1:], parts[1:]):
        if p.shape != parts[0][1].shape:  # a round-1 folder beside a round-2 one
            raise ConfigError(f"{source}: {p.shape[1]} labels where {sources[0]} has {parts[0][1].shape[1]}; blend "
                              "runs of one task")  # fmt: skip
    return parts[0][0], sum(wi * p for wi, (_, p) in zip(w, parts))


def resolve_weights(sources: list[str | Path], weights: str | list[float]) -> list[float]:
    """Blend weights: "equal", "oof" (`blend_weights`) or the given numbers, normalised to sum 1."""
    if isinstance(weights, str) and weights not in ("equal", "oof"):
        raise ConfigError(f"blend weights '{weights}' unknown; use 'equal' or 'oof'")
    w = (
        (blend_weights(sources) if weights == "oof" else [1 / len(sources)] * len(sources))
        if isinstance(weights, str)
        else [float(v) / sum(weights) for v in weights]
    )
    if len(w) != len(sources):
        raise ConfigError(f"{len(w)} blend weights for {len(sources)} folders")
    return w


def write_submission(ids: list[str], probs: np.ndarray, path: str | Path) -> Path:
    """`report_ID|,|p0 p1 ... pK` one line per test row, in the test file's order."""
    path = Path(path)
    lines = [f"{i}{SEP}{' '.join(f'{v:.8f}' for v in row)}" for i, row in zip(ids, np.clip(probs, 0, 1))]
    write_text(path, "\n".join(lines) + "\n")
    return path


def submit(
    source: str | Path | list[str | Path],
    data: str | Path,
    output: str | Path = "submission.csv",
    weights: str | list[float] = "equal",
    calibrate: bool = False,
) -> Path:
    """A submission for a `|,|` test file, checked before returning, from a run or CV folder (fold ensemble), or several
    blended with weights "equal", "oof" (chosen on the CV folders' out-of-fold predictions) or given; `calibrate`
    applies Platt slopes fitted on the blend's out-of-fold predictions (single-fold models' predictions, while the
    submission averages the folds' models: not measured on held-out reports yet, so off by default)."""
    sources = source if isinstance(source, list) else [source]
    w = resolve_weights(sources, weights)
    ids, probs = blend_file(sources, data, w)
    if calibrate:
        probs = apply_platt(probs, *oof_platt(sources, w))
    path = write_submission(ids, probs, output)
    problems = check_submission(path, data, probs.shape[1])
    if problems:
        raise DataError(f"{path}: the written submission fails its check: {problems[0]}")
    return path


def _is_float(text: str) -> bool:
    """Whether `float(text)` accepts it."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line_problem(n: int, line: str, want: str, n_labels: int) -> list[str]:
    """What is wrong with submission line n (empty list: nothing)."""
    parts = line.split(SEP)
    if len(parts) != 2:
        return [f"line {n}: expected 'report_ID{SEP}p0 ... p{n_labels - 1}' (one '{SEP}' separator)"]
    problems = []
    if parts[0].strip() != want:
        problems.append(f"line {n}: report_ID {parts[0].strip()!r}, expected {want!r} (same order as the test file)")
    values = parts[1].split()
    if len(values) != n_labels:
        return problems + [f"line {n}: {len(values)} probabilities, expected {n_labels}"]
    bad = next((j for j, v in enumerate(values) if not _is_float(v)), None)
    if bad is not None:
        value = values[bad][:40]
        return problems + [f"line {n}: probability {bad + 1} of {n_labels} (p{bad}) is {value!r}, not a number"]
    floats = np.array([float(v) for v in values])
    if not np.all(np.isfinite(floats)) or floats.min() < 0 or floats.max() > 1:
        problems.append(f"line {n}: probabilities must lie in [0, 1]")
    return problems


ROUND_LABELS = {17: "round 1 (17 regions)", 29: "round 2 (17 regions + 12 types)"}


def infer_labels(lines: list[str]) -> int | str:
    """The probabilities per line of a submission, from its first well-formed line (one separator, 17 or 29 values:
    round 1 or 2); otherwise the problem as a string (no line with one separator: 17, and the line checks say why)."""
    counts = [(n, len(ln.split(SEP)[1].split())) for n, ln in enumerate(lines, start=1) if ln.count(SEP) == 1]
    if not counts:
        return 17
    found = next((c for _, c in counts if c in ROUND_LABELS), None)
    if found is None:
        return f"line {counts[0][0]}: {counts[0][1]} probabilities; a submission has 17 (round 1) or 29 (round 2)"
    return found


def check_submission(path: str | Path, data: str | Path, n_labels: int | None = None) -> list[str]:
    """Problems of a submission file against its test file (empty list: valid); at most 10 are listed. The number of
    probabilities per line is `n_labels`, or read from the first line (17: round 1, 29: round 2)."""
    path = Path(path)
    if not path.is_file():
        return ["file not found"]  # the caller names the file
    ids = [r.id for r in read_tianchi(data, require_labels=False).records]
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError as e:
        return [f"not UTF-8 text (byte {e.start}); a submission is lines of report_ID{SEP}probabilities"]
    if n_labels is None:
        inferred = infer_labels(lines)
        if isinstance(inferred, str):
            return [inferred]
        n_labels = inferred
    problems = [f"{len(lines)} rows but the test file has {len(ids)}"] if len(lines) != len(ids) else []
    for n, (line, want) in enumerate(zip(lines, ids), start=1):
        if len(problems) >= 10:
            break
        problems += _line_problem(n, line, want, n_labels)
    return problems
