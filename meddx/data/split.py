"""Train/val/test splits by patient, stratified over labels, and the leakage check that guards them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from meddx.config import SplitConfig
from meddx.data.images import content_hash
from meddx.data.records import SPLITS, DataSet, Record
from meddx.errors import DataError, LeakageError


def _patient_table(ds: DataSet, records: list) -> tuple[list[str], np.ndarray]:
    """Patients in first-seen order and one label row each (any positive; majority class for multi-class)."""
    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in records:
        rows[r.patient_id].append(r.labels)
    patients = list(rows)
    if ds.task == "multiclass":
        table = np.stack([np.eye(len(ds.label_names))[np.bincount(np.argmax(rows[p], 1)).argmax()] for p in patients])
    else:
        table = np.stack([np.max(rows[p], axis=0) for p in patients])
    return patients, table


def _carve(table: np.ndarray, task: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (rest, carved) with `fraction` carved, stratified where possible."""
    n = len(table)
    idx = np.arange(n)
    n_carved = int(round(fraction * n))
    if n_carved == 0 or fraction <= 0:
        return idx, idx[:0]
    if n_carved >= n:
        raise DataError(f"cannot carve {fraction:.0%} of {n} patients and keep any for training")
    if task == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_carved, random_state=seed)
        rest, carved = next(splitter.split(idx, table))
        return np.sort(rest), np.sort(carved)
    from sklearn.model_selection import train_test_split

    y = table.argmax(1) if task == "multiclass" else table[:, 0].astype(int)
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and n_carved >= len(counts[counts > 0]) else None
    rest, carved = train_test_split(idx, test_size=n_carved, stratify=stratify, random_state=seed)
    return np.sort(rest), np.sort(carved)


def fold_indices(table: np.ndarray, task: str, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number of each row: iterative stratification for multi-label, stratified k-fold otherwise."""
    if len(table) < folds:
        raise DataError(f"cannot make {folds} folds of {len(table)} patients")
    if task == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        y = table
    else:
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        y = table.argmax(1) if task == "multiclass" else table[:, 0].astype(int)
    out = np.zeros(len(table), dtype=int)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(table)), y)):
        out[held] = k
    return out


def assign_fold(ds: DataSet, cfg: SplitConfig) -> DataSet:
    """k-fold by patient: fold `cfg.fold` is test (out-of-fold), val is carved from the other folds."""
    patients, table = _patient_table(ds, ds.records)
    fold_of = dict(zip(patients, fold_indices(table, ds.task, cfg.folds, cfg.seed)))
    for r in ds.records:
        r.split = "test" if fold_of[r.patient_id] == cfg.fold else "train"
    pool = [r for r in ds.records if r.split == "train"]
    r_train, r_val, _ = cfg.ratios
    patients, table = _patient_table(ds, pool)
    _, carved = _carve(table, ds.task, r_val / (r_train + r_val), cfg.seed)
    chosen = {patients[i] for i in carved}
    for r in pool:
        if r.patient_id in chosen:
            r.split = "val"
    ds.notes.append(
        f"splits: fold {cfg.fold} of {cfg.folds} (by patient, stratified) is test; val carved from the rest"
    )
    if not any(r.split == "val" for r in ds.records):
        raise DataError(f"{ds.origin}: the val split is empty; check split.ratios {cfg.ratios}")
    return ds


def assign_splits(ds: DataSet, cfg: SplitConfig | None = None) -> DataSet:
    """Set every record's split: official splits kept, missing ones carved from train by patient."""
    cfg = cfg or SplitConfig()
    if not ds.records:
        raise DataError(f"{ds.origin}: the data set has no records")
    if cfg.folds:
        return assign_fold(ds, cfg)
    official = {r.split for r in ds.records}
    if not cfg.use_official or official == {None}:
        for r in ds.records:
            r.split = "train"
        have, official = {"train"}, set()  # nothing official is kept
    elif None in official:
        raise DataError(f"{ds.origin}: some records have an official split and some do not")
    else:
        have = official
    if "train" not in have:
        raise DataError(f"{ds.origin}: official splits {sorted(have)} have no train split")
    r_train, r_val, r_test = cfg.ratios
    pool = [r for r in ds.records if r.split == "train"]
    plan = []
    if "test" not in have and r_test > 0:
        plan.append(("test", r_test / (r_train + r_test + (r_val if "val" not in have else 0))))
    if "val" not in have and r_val > 0:
        plan.append(("val", r_val / (r_train + r_val)))
    for name, fraction in plan:
        patients, table = _patient_table(ds, pool)
        _, carved = _carve(table, ds.task, fraction, cfg.seed)
        chosen = {patients[i] for i in carved}
        for r in pool:
            if r.patient_id in chosen:
                r.split = name
        pool = [r for r in pool if r.split == "train"]
    ds.notes.append(
        "splits: " + ", ".join(f"{s} {'official' if s in have and s in official else 'by patient'}" for s in SPLITS)
    )
    for s in SPLITS:
        if s in ("train", "val") and not any(r.split == s for r in ds.records):
            raise DataError(f"{ds.origin}: the {s} split is empty; check split.ratios {cfg.ratios} and the data")
    return ds


@dataclass
class LeakageReport:
    """What sits on two sides of a split: patients, sample ids, identical images."""

    shared_patients: dict[str, list[str]] = field(default_factory=dict)
    shared_ids: dict[str, list[str]] = field(default_factory=dict)
    duplicate_images: list[list[tuple[str, str]]] = field(default_factory=list)
    unhashed: int = 0
    patients_known: bool = True
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.shared_patients or self.shared_ids or self.duplicate_images)

    def summary(self) -> str:
        """Human-readable lines naming what leaks."""
        if self.ok:
            msg = "no leakage: no patient, sample id or identical image on two sides of the split"
            if not self.patients_known:
                msg += " (patient ids unknown: each image counted as its own patient)"
            msg += f"; {self.unhashed} missing file(s) not hashed" if self.unhashed else ""
            return "\n".join([msg, *self.actions])
        lines = []
        if self.shared_patients:
            lines.append(f"{len(self.shared_patients)} patient(s) on two sides of the split:")
            lines += [f"  patient {p}: {' + '.join(s)}" for p, s in sorted(self.shared_patients.items())]
        if self.shared_ids:
            lines.append(f"{len(self.shared_ids)} sample id(s) on two sides:")
            lines += [f"  {i}: {' + '.join(s)}" for i, s in sorted(self.shared_ids.items())]
        if self.duplicate_images:
            lines.append(f"{len(self.duplicate_images)} identical image(s) on two sides:")
            lines += ["  " + " = ".join(f"{i} ({s})" for i, s in group) for group in self.duplicate_images]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "shared_patients": self.shared_patients,
            "shared_ids": self.shared_ids,
            "duplicate_images": [[{"id": i, "split": s} for i, s in g] for g in self.duplicate_images],
            "unhashed_files": self.unhashed,
            "patients_known": self.patients_known,
            "actions": self.actions,
        }


def check_leakage(ds: DataSet, images: bool = True) -> LeakageReport:
    """Find patients, sample ids and (by content hash) images that appear in more than one split."""
    by_patient: dict[str, set[str]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for r in ds.records:
        by_patient[r.patient_id].add(r.split)
        by_id[r.id].add(r.split)
    order = {s: i for i, s in enumerate(SPLITS)}
    key = lambda s: order.get(s, 9)  # noqa: E731
    report = LeakageReport(patients_known=ds.patients_known)
    report.shared_patients = {p: sorted(s, key=key) for p, s in by_patient.items() if len(s) > 1}
    report.shared_ids = {
        i: sorted(s, key=key) for i, s in by_id.items() if len(s) > 1 and i not in report.shared_patients
    }
    if images:
        by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for r in ds.records:
            h = r.sha1 = content_hash(r)
            if h is None:
                report.unhashed += 1
            else:
                by_hash[h].append((r.id, r.split))
        report.duplicate_images = [g for g in by_hash.values() if len({s for _, s in g}) > 1]
    return report


def enforce_no_leakage(ds: DataSet, cfg: SplitConfig | None = None) -> LeakageReport:
    """Run the check before training: raise on shared patients; duplicates per cfg.on_duplicate_images."""
    cfg = cfg or SplitConfig()
    report = check_leakage(ds)
    official = any(n.startswith("splits:") and "official" in n for n in ds.notes)
    if report.shared_patients or report.shared_ids:
        hint = (
            "\nthe official splits share these patients: set split.use_official=false to split again by patient"
            if official and report.shared_patients
            else ""
        )
        raise LeakageError("leakage between splits:\n" + report.summary() + hint)
    if report.duplicate_images:
        if cfg.on_duplicate_images == "error":
            regex = (
                "; patient ids are unknown (each image its own patient): if file names carry them, give "
                "--patient-regex first"
                if not report.patients_known
                else ""
            )
            raise LeakageError(
                "leakage between splits:\n"
                + report.summary()
                + f"\nset split.on_duplicate_images to 'drop_from_train' (remove them from train) or 'warn'{regex}"
            )
        if cfg.on_duplicate_images == "drop_from_train":
            drop = {i for g in report.duplicate_images for i, s in g if s == "train"}
            ds.records = [r for r in ds.records if not (r.split == "train" and r.id in drop)]
            action = f"dropped {len(drop)} train image(s) identical to val/test images: {sorted(drop)[:20]}"
            report = check_leakage(ds)
            report.actions.append(action)
            if not report.ok:
                raise LeakageError("leakage between val and test remains:\n" + report.summary())
        else:
            report.actions.append(
                f"warning: {len(report.duplicate_images)} identical image(s) left on two sides "
                "(on_duplicate_images=warn)"
            )
        ds.notes.extend(report.actions)
    return report


def overlap_with_training(records: list[Record], split_table: pd.DataFrame, drop: bool) -> tuple[list[Record], dict]:
    """New labelled data checked against a run's train and val samples (split.csv): files with the same SHA-1 as a
    training image stop the evaluation (LeakageError), or with `drop` are removed; shared patient ids are reported.
    Returns the records kept and the check for the report."""
    seen = split_table[split_table["split"].isin(["train", "val"])]
    known = dict(zip(seen["sha1"], seen["id"])) if "sha1" in seen else {}
    hashes = [content_hash(r) for r in records]
    same = [(r.id, known[h]) for r, h in zip(records, hashes) if h and h in known]
    patients = sorted({r.patient_id for r in records} & set(seen["patient_id"].astype(str))) if known else []
    check = {
        "checked": bool(known),
        "files": len(records),
        "identical_to_training": len(same),
        "examples": [f"{a} = {b}" for a, b in same[:5]],
        "shared_patient_ids": len(patients),
        "dropped": 0,
    }
    if same and not drop:
        raise LeakageError(
            f"{len(same)} of {len(records)} image(s) are identical to the run's training/val images (e.g. "
            f"{', '.join(check['examples'][:3])}); evaluate on data the model never saw, or leave them out "
            "(--drop-training-overlap, evaluate.on_training_overlap=drop)"
        )
    if same:
        ids = {a for a, _ in same}
        records = [r for r in records if r.id not in ids]
        check["dropped"] = len(same)
    return records, check
