"""Train/val/test splits by patient, stratified over labels, and the leakage check that guards them."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from meddx.config import SplitConfig
from meddx.data.records import SPLITS, DataSet, Record
from meddx.errors import DataError


def _patient_table(ds: DataSet, records: list) -> tuple[list[str], np.ndarray]:
    """Patients in first-seen order and one label row each (any positive; majority class for multi-class)."""
    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in records:
        rows[r.patient_id].append(r.labels)
    patients = list(rows)
    if ds.task == "multiclass":
        table = np.stack([np.eye(len(ds.label_names))[np.bincount(np.argmax(rows[p], 1)).argmax()] for p in patients])
    else:
        # unknown labels (NaN) count as negative and soft ones as positive from 0.5, for stratification only
        table = np.stack([(np.nan_to_num(np.fmax.reduce(rows[p], axis=0)) >= 0.5).astype(np.float32) for p in patients])
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


def fold_indices(table: np.ndarray, task: str, folds: int, seed: int = 0, names: list[str] | None = None) -> np.ndarray:
    """Fold number of each row: iterative stratification for multi-label, stratified k-fold otherwise (`names`: the
    label names, for the message when a class has fewer patients than folds)."""
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
        values, counts = np.unique(y, return_counts=True)
        if (counts < folds).any():  # a fold would test a class its training never saw: its AUC is no figure
            name = (lambda v: names[v]) if names and task == "multiclass" else (  # noqa: E731
                lambda v: f"{names[0]} = {v}" if names else f"class {v}")  # fmt: skip
            few = ", ".join(f"{name(v)}: {c}" for v, c in zip(values, counts) if c < folds)
            out = " (--folds), or leave that class out" if task == "multiclass" else " (--folds)"
            raise DataError(f"cannot make {folds} folds: patients per class ({few}) fewer than the folds; use fewer "
                            f"folds{out}")  # fmt: skip
    out = np.zeros(len(table), dtype=int)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(table)), y)):
        out[held] = k
    return out


def assign_fold(ds: DataSet, cfg: SplitConfig) -> DataSet:
    """k-fold by patient: fold `cfg.fold` is test (out-of-fold), val is carved from the other folds."""
    patients, table = _patient_table(ds, ds.records)
    fold_of = dict(zip(patients, fold_indices(table, ds.task, cfg.folds, cfg.seed, ds.label_names)))
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


def _small_val(ds: DataSet, minimum: int) -> str | None:
    """Why an official val split is too small to choose anything on (binary and multi-class: its rarest class under
    `minimum` images), or None."""
    labels = np.array([r.labels for r in ds.records if r.split == "val"]).reshape(-1, len(ds.label_names))
    if minimum == 0 or ds.task == "multilabel" or not len(labels):
        return None
    if ds.task == "binary":
        known = labels[~np.isnan(labels[:, 0]), 0]  # blank labels count for no class; soft ones for the nearer
        rarest = int(min((known >= 0.5).sum(), (known < 0.5).sum()))
    else:
        rarest = int(np.bincount(labels.argmax(1), minlength=labels.shape[1]).min())
    if rarest >= minimum:
        return None
    return (
        f"the official val split holds {len(labels)} images, {rarest} of its rarest class (under split.min_val_class="
        f"{minimum}): too few to choose a model, epochs or an operating point on"
    )


def _drop_shared_guessed(ds: DataSet) -> None:
    """Official splits sharing patients guessed from the file names: each such patient keeps only its images on its
    latest side (test, else val), so the official val and test stay whole, as for copies; the notes say what went."""
    order = {s: i for i, s in enumerate(SPLITS)}
    latest: dict[str, str] = {}
    for r in ds.records:
        if order[r.split] > order.get(latest.get(r.patient_id, ""), -1):
            latest[r.patient_id] = r.split
    gone = [r for r in ds.records if latest[r.patient_id] != r.split]
    if gone:
        ds.records = [r for r in ds.records if latest[r.patient_id] == r.split]
        counts = Counter(r.split for r in gone)
        ds.notes.append(
            f"dropped {' and '.join(f'{n} {s}' for s, n in counts.items())} image(s) of "
            f"{len({r.patient_id for r in gone})} patient(s) that the official splits share (patients guessed from the "
            "file names; split.use_official=false splits again by patient instead)"
        )


def assign_splits(ds: DataSet, cfg: SplitConfig | None = None, mend: bool = True) -> DataSet:
    """Set every record's split: official splits kept, missing ones carved from train by patient; with `mend`, a
    patient guessed from file names that official splits share keeps only its images on the latest one."""
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
    if mend and ds.patients_guessed and len(have) > 1:
        _drop_shared_guessed(ds)
    if "val" in have and (why := _small_val(ds, cfg.min_val_class)):
        if ds.patients_known:  # else a val carved by image could split a patient the official val kept whole
            for r in ds.records:
                r.split = "train" if r.split == "val" else r.split
            have = have - {"val"}
        ds.notes.append(why + ("; merged into train, val carved by patient" if ds.patients_known else
                               "; kept: patient ids are unknown"))  # fmt: skip
    r_train, r_val, r_test = cfg.ratios
    pool = [r for r in ds.records if r.split == "train"]
    plan = []
    if "test" not in have and r_test > 0:
        plan.append(("test", r_test / (r_train + r_test + (r_val if "val" not in have else 0))))
    if "val" not in have and r_val > 0:
        plan.append(("val", r_val / (r_train + r_val)))
    expected = {}  # images each carved split would hold if patients had one image each
    for name, fraction in plan:
        expected[name] = fraction * len(pool)
        patients, table = _patient_table(ds, pool)
        _, carved = _carve(table, ds.task, fraction, cfg.seed)
        chosen = {patients[i] for i in carved}
        for r in pool:
            if r.patient_id in chosen:
                r.split = name
        pool = [r for r in pool if r.split == "train"]
    unit = "by patient" if ds.patients_known else "by image (no patient ids)"
    how = {s: "official" if s in have and s in official else unit for s in SPLITS}
    ds.notes.append("splits: " + ", ".join(f"{s} {how[s]}" for s in SPLITS))
    for s in SPLITS:
        if s in ("train", "val") and not any(r.split == s for r in ds.records):
            raise DataError(f"{ds.origin}: the {s} split is empty; check split.ratios {cfg.ratios} and the data")
    if absent := _absent_labels(ds):
        ds.notes.append(absent)
    if skew := _skewed_sizes(ds, expected):
        ds.notes.append(skew)
    return ds


def _skewed_sizes(ds: DataSet, expected: dict[str, float]) -> str:
    """A carved split whose image count is far from what its ratio carved from its pool (patients with many images
    carved whole), in words; "" otherwise."""
    counts, total = Counter(r.split for r in ds.records), len(ds.records)
    largest = Counter(r.patient_id for r in ds.records).most_common(1)[0]
    off = [f"{s} holds {counts[s]} images ({counts[s] / total:.0%}) where its ratio carves about {want:.0f}"
           for s, want in expected.items() if abs(counts[s] - want) > max(0.5 * want, 0.03 * total)]  # fmt: skip
    if not off or total < 50 or largest[1] == 1:
        return ""
    return "; ".join(off) + f": patients are carved whole and differ in images (the most: {largest[1]}, '{largest[0]}')"


def _absent_labels(ds: DataSet) -> str:
    """Labels (classes) with no positive sample in val or test, where their figures and thresholds are undefined and
    a macro average leaves them out, in words; "" when every label is in both."""
    labels = np.stack([r.labels for r in ds.records]).astype(np.float64)
    splits = np.array([r.split for r in ds.records])
    gaps = []
    for j, name in enumerate(ds.label_names):
        positive = labels[:, j] >= 0.5
        missing = [s for s in ("val", "test") if (splits == s).any() and not positive[splits == s].any()]
        if missing:
            gaps.append(f"'{name}' ({int(positive.sum())} in all) has no sample in {' or '.join(missing)}")
    return "; ".join(gaps) + (
        ": its figures there are undefined and macro averages leave it out (more of its data fixes it)" if gaps else ""
    )


def as_given(shared: dict[str, list[str]], records: list[Record], given: dict[int, str | None]) -> list[str]:
    """Shared patients by the splits their files gave, where a carved split renamed a side (`val + test` for a patient
    of the train and valid files, test carved from train), and what to do."""
    if not shared or all(given.get(id(r)) in (None, r.split) for r in records):  # `given`: by id(record)
        return []
    sides: dict[str, set] = {}
    for r in records:
        if r.patient_id in shared and given.get(id(r)):
            sides.setdefault(r.patient_id, set()).add(given[id(r)])
    named = [f"{p}: {' + '.join(sorted(s))}" for p, s in sorted(sides.items()) if sorted(s) != sorted(shared[p])][:20]
    fix = "keep each one's rows or images in one split's file or folder, or set split.use_official=false to split again"
    fix += " by patient"
    return [f"as the files give them (a carved split renames a side): {'; '.join(named)}; {fix}"] if named else []
