"""Readers: CSV manifests, class folders and MedMNIST .npz files, all returning a DataSet of Records."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.config import DataConfig
from meddx.data.images import READABLE_EXTENSIONS
from meddx.data.records import DataSet, Record, Task
from meddx.errors import DataError

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_COLUMN_GUESSES = ("Image", "image", "path", "Path", "filename", "file", "Image Index")
PATIENT_COLUMN_GUESSES = ("PatientId", "patient_id", "Patient ID", "patient", "PatientID", "subject_id")
BUNDLED = {"pneumoniamnist": ("pneumoniamnist.npz", ["normal", "pneumonia"])}


def bundled_path(name: str) -> Path:
    """Path of a data set shipped inside meddx (e.g. 'pneumoniamnist')."""
    return Path(str(resources.files("meddx.datasets").joinpath(BUNDLED[name][0])))


def load_pneumoniamnist() -> DataSet:
    """The bundled PneumoniaMNIST (CC BY 4.0, MedMNIST v2) with its official train/val/test splits."""
    return read_medmnist(bundled_path("pneumoniamnist"), class_names=BUNDLED["pneumoniamnist"][1])


def _class_labels(names: list[str], positive_class: str | None, where: str) -> tuple[list[str], Task, dict]:
    """Label names, task and a class-name -> label-vector map for one column of class names."""
    classes = sorted(set(names))
    if len(classes) < 2:
        raise DataError(f"{where}: only one class found ({classes}); need at least two")
    if len(classes) == 2:
        positive = positive_class or classes[-1]
        if positive not in classes:
            raise DataError(f"{where}: positive_class '{positive}' is not one of the classes {classes}")
        return [positive], "binary", {c: np.array([float(c == positive)], np.float32) for c in classes}
    eye = np.eye(len(classes), dtype=np.float32)
    return classes, "multiclass", {c: eye[i] for i, c in enumerate(classes)}


def read_medmnist(path: str | Path, class_names: list[str] | None = None) -> DataSet:
    """A MedMNIST v2 .npz (2-D or 3-D) with its official splits; each image is its own patient."""
    path = str(path)
    if not Path(path).is_file():
        raise DataError(f"MedMNIST file not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        splits = [s for s in ("train", "val", "test") if f"{s}_images" in files]
        if not splits:
            raise DataError(f"{path}: no '<split>_images' arrays; keys are {sorted(files)}")
        labels = {}
        for s in splits:
            if f"{s}_labels" not in files:
                raise DataError(f"{path}: has {s}_images but no {s}_labels")
            lab = np.asarray(npz[f"{s}_labels"])
            n_img = npz[f"{s}_images"].shape[0]
            lab = lab.reshape(len(lab), -1)
            if lab.shape[0] != n_img:
                raise DataError(f"{path}: {s}_labels has {lab.shape[0]} rows but {s}_images has {n_img}")
            labels[s] = lab
    width = {lab.shape[1] for lab in labels.values()}
    if len(width) != 1:
        raise DataError(f"{path}: label arrays differ in width across splits: {width}")
    records: list[Record] = []
    if width == {1}:
        k = int(max(lab.max() for lab in labels.values())) + 1
        if any(lab.min() < 0 for lab in labels.values()):
            raise DataError(f"{path}: negative class index in labels")
        names = class_names or [f"class_{i}" for i in range(max(k, 2))]
        if len(names) < k:
            raise DataError(f"{path}: {k} classes but only {len(names)} class names given")
        if len(names) == 2:
            label_names, task, vec = [names[1]], "binary", lambda c: np.array([float(c)], np.float32)
        else:
            eye = np.eye(len(names), dtype=np.float32)
            label_names, task, vec = list(names), "multiclass", lambda c: eye[int(c)]
        for s in splits:
            for i, c in enumerate(labels[s][:, 0]):
                rid = f"{s}_{i}"
                records.append(Record(rid, rid, path, vec(c), index=i, key=f"{s}_images", split=s))
    else:
        label_names = class_names or [f"label_{j}" for j in range(width.pop())]
        task = "multilabel"
        for s in splits:
            for i, row in enumerate(labels[s]):
                rid = f"{s}_{i}"
                records.append(Record(rid, rid, path, row.astype(np.float32), index=i, key=f"{s}_images", split=s))
    return DataSet(records, label_names, task, origin=path, notes=["MedMNIST: no patient ids; each image is its own patient"])


def _patient_from_name(name: str, regex: re.Pattern | None) -> str | None:
    if regex is None:
        return Path(name).stem
    m = regex.search(name)
    if not m:
        return None
    return m.group(1) if m.groups() else m.group(0)


def read_folder(path: str | Path, patient_regex: str | None = None, positive_class: str | None = None) -> DataSet:
    """`class/*.png` or `split/class/*.png`; the patient id comes from a regex on the file name."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"folder not found: {root}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise DataError(f"{root}: no class folders inside")
    if all(p.name.lower() in SPLIT_ALIASES for p in subdirs):
        split_dirs = [(SPLIT_ALIASES[p.name.lower()], p) for p in subdirs]
    else:
        split_dirs = [(None, root)]
    regex = re.compile(patient_regex) if patient_regex else None
    entries, ignored, unmatched = [], [], []
    for split, sdir in split_dirs:
        for cdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(cdir.iterdir()):
                if f.name.startswith(".") or not f.is_file():
                    continue
                if f.suffix.lower() not in READABLE_EXTENSIONS:
                    ignored.append(str(f))
                    continue
                patient = _patient_from_name(f.name, regex)
                if patient is None:
                    unmatched.append(str(f))
                entries.append((split, cdir.name, f, patient))
    if not entries:
        raise DataError(f"{root}: no image files found in its class folders")
    if unmatched:
        raise DataError(
            f"{root}: patient_regex {patient_regex!r} does not match {len(unmatched)} file name(s), e.g. "
            + ", ".join(unmatched[:5])
        )
    label_names, task, vec = _class_labels([c for _, c, _, _ in entries], positive_class, str(root))
    records = [
        Record(str(f.relative_to(root)), str(patient), str(f), vec[c], split=split, row=str(f.relative_to(root)))
        for split, c, f, patient in entries
    ]
    notes = [f"{len(ignored)} non-image file(s) ignored, e.g. {ignored[0]}"] if ignored else []
    if regex is None:
        notes.append("no patient_regex: each image is its own patient")
    return DataSet(records, label_names, task, origin=str(root), notes=notes)


def _pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], what: str, where: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{where}: no {what} column '{wanted}'; columns are {columns}")
        return wanted
    return next((c for c in guesses if c in columns), None)


def read_csv_manifest(
    path: str | Path | dict[str, str],
    root: str | Path | None = None,
    image_column: str | None = None,
    patient_column: str | None = None,
    label_columns: list[str] | None = None,
    label_column: str | None = None,
    positive_class: str | None = None,
    check_files: bool = True,
) -> DataSet:
    """CSV(s) with an image path, a patient id and 0/1 label columns or one class-name column.

    A {split: csv} mapping keeps official splits; columns are matched by name, so their order may differ.
    """
    files = {None: str(path)} if not isinstance(path, dict) else {SPLIT_ALIASES.get(k.lower(), k): v for k, v in path.items()}
    bad = [k for k in files if k is not None and k not in ("train", "val", "test")]
    if bad:
        raise DataError(f"split names {bad} not understood; use train, val (or valid) and test")
    frames = {}
    for split, csv in files.items():
        if not Path(csv).is_file():
            raise DataError(f"CSV manifest not found: {csv}")
        try:
            frames[split] = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{csv}: not a readable CSV ({type(e).__name__}: {e})") from None
        if frames[split].empty:
            raise DataError(f"{csv}: has a header but no rows")
    first_csv, first = next(iter(files.values())), next(iter(frames.values()))
    cols = list(first.columns)
    img_col = _pick_column(cols, image_column, IMAGE_COLUMN_GUESSES, "image", first_csv)
    if img_col is None:
        raise DataError(f"{first_csv}: no image path column; set image_column (columns are {cols})")
    pat_col = _pick_column(cols, patient_column, PATIENT_COLUMN_GUESSES, "patient id", first_csv)
    if label_column is not None:
        _pick_column(cols, label_column, (), "label", first_csv)
        label_cols = [label_column]
    else:
        label_cols = label_columns or [c for c in cols if c not in (img_col, pat_col)]
        if not label_cols:
            raise DataError(f"{first_csv}: no label columns besides '{img_col}' and '{pat_col}'")
    for split, df in frames.items():
        missing = [c for c in [img_col, *([pat_col] if pat_col else []), *label_cols] if c not in df.columns]
        if missing:
            raise DataError(f"{files[split]}: missing column(s) {missing}; columns are {list(df.columns)}")

    if label_column is not None:
        all_names = [v for df in frames.values() for v in df[label_column]]
        for split, df in frames.items():
            blank = np.flatnonzero(df[label_column].str.strip() == "")
            if len(blank):
                raise DataError(f"{files[split]}: blank '{label_column}' on row(s) {[int(i) + 2 for i in blank[:10]]}")
        label_names, task, vec = _class_labels(all_names, positive_class, first_csv)
    else:
        label_names, task = list(label_cols), ("binary" if len(label_cols) == 1 else "multilabel")

    base_root = Path(root) if root is not None else None
    records, missing_files = [], []
    for split, df in frames.items():
        csv = files[split]
        if pat_col:
            blank = np.flatnonzero(df[pat_col].str.strip() == "")
            if len(blank):
                raise DataError(f"{csv}: blank patient id in column '{pat_col}' on row(s) {[int(i) + 2 for i in blank[:10]]}")
        if label_column is None:
            values = df[label_cols].apply(lambda s: s.str.strip())
            ok = values.isin(["0", "1", "0.0", "1.0"])
            if not ok.all().all():
                r, c = np.argwhere(~ok.to_numpy())[0]
                n_bad = int((~ok).to_numpy().sum())
                raise DataError(
                    f"{csv}: row {r + 2}, column '{label_cols[c]}': label value {values.iat[r, c]!r} is not 0 or 1"
                    f" ({n_bad} such value(s) in the file)"
                )
            label_matrix = values.astype(float).to_numpy(np.float32)
        base = base_root or Path(csv).parent
        images = df[img_col].str.strip().to_numpy()
        patients = df[pat_col].str.strip().to_numpy() if pat_col else images
        class_names = df[label_column].to_numpy() if label_column else None
        for i, image in enumerate(images):
            where = f"{csv} row {i + 2}"
            if not image:
                raise DataError(f"{where}: blank image path in column '{img_col}'")
            source = str(base / image)
            labels = vec[class_names[i]] if label_column else label_matrix[i]
            records.append(Record(image, patients[i], source, labels, split=split, row=where))
            if check_files and not Path(source).is_file():
                missing_files.append(f"{where}: {source}")
    if missing_files:
        raise DataError(
            f"{len(missing_files)} image file(s) named in the manifest do not exist, e.g.\n  " + "\n  ".join(missing_files[:5])
        )
    notes = [] if pat_col else ["no patient id column: each image is its own patient"]
    return DataSet(records, label_names, task, origin=", ".join(files.values()), notes=notes)


def read_dataset(cfg: DataConfig, check_files: bool = True) -> DataSet:
    """Dispatch on cfg.format (or guess from the path) and return the DataSet."""
    path = cfg.path
    if isinstance(path, str) and path in BUNDLED:
        ds = read_medmnist(bundled_path(path), class_names=cfg.label_names or BUNDLED[path][1])
        ds.origin = f"bundled:{path}"
        return ds
    fmt = cfg.format
    if fmt == "auto" and isinstance(path, str) and Path(path).is_file():
        from meddx.data.sequences import is_tianchi_file

        fmt = "tianchi" if is_tianchi_file(path) else fmt
    if fmt == "tianchi":
        from meddx.data.sequences import read_tianchi

        if not isinstance(path, str):
            raise DataError("data.format tianchi reads one labelled file; put test files in data.vocab_files")
        return read_tianchi(path, cfg.label_set)
    if fmt == "auto":
        if isinstance(path, dict) or str(path).lower().endswith((".csv", ".tsv")):
            fmt = "csv"
        elif str(path).lower().endswith(".npz"):
            fmt = "medmnist"
        elif Path(path).is_dir():
            fmt = "folder"
        elif not Path(path).exists():
            raise DataError(f"data path not found: {path}")
        else:
            raise DataError(f"{path}: cannot tell the format; set data.format to csv, folder or medmnist")
    if fmt == "medmnist":
        return read_medmnist(path, class_names=cfg.label_names)
    if fmt == "folder":
        return read_folder(path, cfg.patient_regex, cfg.positive_class)
    return read_csv_manifest(
        path, cfg.root, cfg.image_column, cfg.patient_column,
        cfg.label_columns, cfg.label_column, cfg.positive_class, check_files,
    )
