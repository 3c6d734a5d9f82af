"""The Tianchi report task: its score, the submission file (writer and checker), k-fold CV with a fold ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.config import RunConfig, load_config, validate_config
from meddx.data.sequences import SEP, read_tianchi
from meddx.errors import ConfigError
from meddx.evaluate import metrics as M
from meddx.train.run import Run, fit


def tianchi_scores(y: np.ndarray, p: np.ndarray, label_names: list[str], prior: np.ndarray | None = None, seed: int = 0) -> dict:
    """mlogloss (competition formula), score = 1 - mlogloss, round 2's 0.6 x regions + 0.4 x types, per-label AUC,
    exact match at 0.5, and the all-zero, prior and uniform-random baselines on the same rows."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    regions = [j for j, n in enumerate(label_names) if not n.startswith("type_")]
    types = [j for j, n in enumerate(label_names) if n.startswith("type_")]

    def score(q: np.ndarray) -> dict:
        out = {"mlogloss": M.mlogloss(y, q)}
        if regions and types:
            r, t = M.mlogloss(y[:, regions], q[:, regions]), M.mlogloss(y[:, types], q[:, types])
            out.update(regions_mlogloss=r, types_mlogloss=t, score=0.6 * (1 - r) + 0.4 * (1 - t))
        else:
            out["score"] = 1 - out["mlogloss"]
        return out

    prior = y.mean(0) if prior is None else np.asarray(prior, np.float64)
    rng = np.random.default_rng(seed)
    auc = {n: float(M.roc_auc(y[:, j], p[:, j])[0]) for j, n in enumerate(label_names)}
    return {
        "n_samples": len(y), "labels": len(label_names),
        "model": {**score(p), "exact_match": float(M.exact_match(y, p >= 0.5)[0]),
                  "mean_roc_auc": float(np.nanmean(list(auc.values()))), "per_label_roc_auc": auc},
        "baselines": {"all_zero": score(np.zeros_like(p)), "prior": score(np.broadcast_to(prior, p.shape)),
                      "random": score(rng.random(p.shape))},
    }


def read_test(path: str | Path):
    """The rows of a test file (labels, if any, ignored)."""
    return read_tianchi(path, require_labels=False)


def predict_file(source: str | Path, data: str | Path) -> tuple[list[str], np.ndarray]:
    """Report ids and probabilities for a `|,|` file from one run folder or a CV folder (fold ensemble: mean)."""
    src = Path(source)
    runs = [Run(src / r) for r in json.loads((src / "cv.json").read_text())["runs"]] if (src / "cv.json").is_file() else [Run(src)]
    if not runs[0].is_sequence:
        raise ConfigError(f"{src}: not a token-sequence run (no vocab.json); submissions are for the Tianchi track")
    records = read_test(data).records
    probs = np.mean([r.predict_proba(records) for r in runs], axis=0)
    return [r.id for r in records], probs


def blend_weights(sources: list[str | Path]) -> list[float]:
    """Weights for blending `meddx cv` folders, chosen by greedy ensemble selection on their out-of-fold predictions
    (the competition's test set stays unseen); the folders must cover the same reports."""
    from meddx.evaluate.ensemble import greedy_weights

    frames = []
    for src in map(Path, sources):
        if not (src / "oof.csv").is_file():
            raise ConfigError(f"{src}: no oof.csv; weights chosen out of fold need `meddx cv` folders")
        frames.append(pd.read_csv(src / "oof.csv", dtype={"id": str}).sort_values("id", ignore_index=True))
    for src, f in zip(sources[1:], frames[1:]):
        if not f["id"].equals(frames[0]["id"]):
            raise ConfigError(f"{src}: its out-of-fold reports differ from {sources[0]}'s; blend CV runs of the same data")
    names = [c[2:] for c in frames[0].columns if c.startswith("p_")]
    y = frames[0][names].to_numpy(np.float64)
    return greedy_weights([f[[f"p_{n}" for n in names]].to_numpy(np.float64) for f in frames], y, "multilabel").tolist()


def blend_file(sources: list[str | Path], data: str | Path,
               weights: str | list[float] = "equal") -> tuple[list[str], np.ndarray]:
    """Report ids and probabilities of run or CV folders blended with weights "equal", "oof" (blend_weights) or given."""
    if isinstance(weights, str) and weights not in ("equal", "oof"):
        raise ConfigError(f"blend weights '{weights}' unknown; use 'equal' or 'oof'")
    w = (blend_weights(sources) if weights == "oof" else [1 / len(sources)] * len(sources)) if isinstance(weights, str) \
        else [float(v) / sum(weights) for v in weights]
    if len(w) != len(sources):
        raise ConfigError(f"{len(w)} blend weights for {len(sources)} folders")
    parts = [predict_file(s, data) for s in sources]
    probs = sum(wi * p for wi, (_, p) in zip(w, parts))
    return parts[0][0], probs


def write_submission(ids: list[str], probs: np.ndarray, path: str | Path) -> Path:
    """`report_ID|,|p0 p1 ... pK` one line per test row, in the test file's order."""
    path = Path(path)
    lines = [f"{i}{SEP}{' '.join(f'{v:.8f}' for v in row)}" for i, row in zip(ids, np.clip(probs, 0, 1))]
    path.write_text("\n".join(lines) + "\n")
    return path


def check_submission(path: str | Path, data: str | Path, n_labels: int = 17) -> list[str]:
    """Problems of a submission file against its test file (empty list: valid)."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}: file not found"]
    ids = [r.id for r in read_test(data).records]
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    problems = []
    if len(lines) != len(ids):
        problems.append(f"{len(lines)} rows but the test file has {len(ids)}")
    for n, (line, want) in enumerate(zip(lines, ids), start=1):
        if len(problems) >= 10:
            break
        parts = line.split(SEP)
        if len(parts) != 2:
            problems.append(f"line {n}: expected 'report_ID{SEP}p0 ... p{n_labels - 1}' (one '{SEP}' separator)")
            continue
        if parts[0].strip() != want:
            problems.append(f"line {n}: report_ID {parts[0].strip()!r}, expected {want!r} (same order as the test file)")
        values = parts[1].split()
        if len(values) != n_labels:
            problems.append(f"line {n}: {len(values)} probabilities, expected {n_labels}")
            continue
        try:
            floats = np.array([float(v) for v in values])
        except ValueError:
            problems.append(f"line {n}: a probability is not a number: {parts[1].strip()[:60]!r}")
            continue
        if not np.all(np.isfinite(floats)) or floats.min() < 0 or floats.max() > 1:
            problems.append(f"line {n}: probabilities must lie in [0, 1]")
    return problems


def cross_validate(config: RunConfig | dict | str | Path, folds: int = 5, only_folds: list[int] | None = None) -> Path:
    """Train one run per iterative-stratified fold; write out-of-fold predictions, OOF scores and cv.json.

    The CV folder then serves `meddx submit` as a fold ensemble (mean of the fold models' probabilities).
    """
    cfg = load_config(config) if isinstance(config, (str, Path)) else validate_config(config)
    base_name = cfg.name or f"{Path(str(cfg.data.path)).stem}-{cfg.model.name}-cv{folds}"
    cv_dir = Path(cfg.output_dir) / base_name
    runs, oof = [], []
    for k in only_folds if only_folds is not None else range(folds):
        fold_cfg = cfg.model_copy(deep=True)
        fold_cfg.name, fold_cfg.output_dir = f"fold{k}", str(cv_dir)
        fold_cfg.split.folds, fold_cfg.split.fold = folds, k
        if (cv_dir / f"fold{k}" / "model.pt").is_file():  # resumable: finished folds are kept
            run = Run(cv_dir / f"fold{k}")
        else:
            if (cv_dir / f"fold{k}").exists():
                raise ConfigError(f"{cv_dir / f'fold{k}'} exists but did not finish; remove it to retrain that fold")
            run = fit(fold_cfg)
        runs.append(run.path.name)
        table = pd.read_csv(run.path / "split.csv", dtype={"id": str, "patient_id": str})
        pred = run.predictions("test")
        pred["fold"] = k
        pred["prior"] = [table.loc[table["split"] == "train", run.label_names].to_numpy().mean(0)] * len(pred)
        oof.append(pred)
    frame = pd.concat(oof, ignore_index=True)
    names = Run(cv_dir / runs[0]).label_names
    y = frame[names].to_numpy(np.float64)
    p = frame[[f"p_{n}" for n in names]].to_numpy(np.float64)
    prior = np.stack(frame["prior"].to_numpy())
    result = tianchi_scores(y, p, names, prior=prior)
    result["folds"], result["runs"], result["model"]["name"] = folds, runs, cfg.model.name
    frame.drop(columns="prior").to_csv(cv_dir / "oof.csv", index=False, float_format="%.9g")
    (cv_dir / "cv.json").write_text(json.dumps(result, indent=2))
    return cv_dir
