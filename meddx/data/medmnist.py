"""MedMNIST v2 .npz files: official splits, each image its own patient, and the class names of the known sets (the
files carry only indices), so a binary set's positive is the finding (BreastMNIST: malignant, not benign)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meddx.data.records import DataSet, Record, UnknownPositiveClass, stray_class
from meddx.errors import DataError, not_found

# MedMNIST v2's label tables (medmnist/info.py): file-name prefix -> (class names by index, positive index or None)
KNOWN = {
    "pneumoniamnist": (["normal", "pneumonia"], 1),
    "breastmnist": (["malignant", "normal_or_benign"], 0),
    "adrenalmnist3d": (["normal", "hyperplasia"], 1),
    "nodulemnist3d": (["benign", "malignant"], 1),
    "vesselmnist3d": (["vessel", "aneurysm"], 1),
    "octmnist": (["choroidal_neovascularization", "diabetic_macular_edema", "drusen", "normal"], None),
    "chestmnist": (
        "atelectasis cardiomegaly effusion infiltration mass nodule pneumonia pneumothorax consolidation edema "
        "emphysema fibrosis pleural hernia".split(),
        None,
    ),
}


def _arrays(path: str) -> dict[str, np.ndarray]:
    """Each split's labels as (N, width), checked against its images."""
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
    if len({lab.shape[1] for lab in labels.values()}) != 1:
        raise DataError(f"{path}: label arrays differ in width across splits: {[lab.shape for lab in labels.values()]}")
    return labels


def known_names(path: str) -> tuple[list[str] | None, int | None]:
    """The class names and positive index of a known MedMNIST file (by its name's prefix), else (None, None)."""
    stem = Path(path).name.lower()
    return next((known for prefix, known in KNOWN.items() if stem.startswith(prefix)), (None, None))


def _positive(names: list[str], positive_class: str | None, default: int, path: str) -> int:
    """The index of the positive class: `positive_class` by name (any case), `class_<i>` or index, else `default`."""
    if positive_class is None:
        return default
    wanted = positive_class.strip().casefold()
    for i, name in enumerate(names):
        if wanted in (name.casefold(), f"class_{i}", str(i)):
            return i
    raise UnknownPositiveClass(f"{path}: positive_class '{positive_class}' is not one of the classes {names}")


def read_medmnist(path: str | Path, class_names: list[str] | None = None, positive_class: str | None = None) -> DataSet:
    """A MedMNIST v2 .npz (2-D or 3-D) with its official splits; each image is its own patient. Class names are
    `class_names`, else MedMNIST's own for a known file, else class_<i>; of two, the positive is `positive_class`,
    else the known set's finding, else index 1."""
    path = str(path)
    if not Path(path).is_file():
        raise DataError(not_found("MedMNIST file", path))
    labels = _arrays(path)
    known, known_positive = known_names(path) if class_names is None else (None, None)
    notes = ["MedMNIST: no patient ids; each image is its own patient"]
    records: list[Record] = []
    classes: list[str] = []
    width = next(iter(labels.values())).shape[1]
    if width == 1:
        k = int(max(lab.max() for lab in labels.values())) + 1
        if any(lab.min() < 0 for lab in labels.values()):
            raise DataError(f"{path}: negative class index in labels")
        indices = [(s, i, str(int(c))) for s, lab in labels.items() for i, c in enumerate(lab[:, 0])]
        stray_class([c for *_, c in indices], path, [f"{s}_labels[{i}]" for s, i, _ in indices])
        names = list(class_names or (known if known and len(known) >= k else [f"class_{i}" for i in range(max(k, 2))]))
        if len(names) < k:
            raise DataError(f"{path}: {k} classes but only {len(names)} class names given")
        if class_names is None and names == known:
            notes.append(f"class names from MedMNIST v2's table: {', '.join(f'{i} {n}' for i, n in enumerate(names))}")
        if len(names) == 2:
            pos = _positive(names, positive_class, 1 if known_positive is None else known_positive, path)
            label_names, task, vec = [names[pos]], "binary", lambda c: np.array([float(c == pos)], np.float32)
        else:
            eye = np.eye(len(names), dtype=np.float32)
            label_names, task, vec = list(names), "multiclass", lambda c: eye[int(c)]
        rows, classes = {s: [vec(c) for c in lab[:, 0]] for s, lab in labels.items()}, names
    else:
        label_names = list(
            class_names or (known if known and len(known) == width else [f"label_{j}" for j in range(width)])
        )
        task, rows = "multilabel", {s: lab.astype(np.float32) for s, lab in labels.items()}
    for s, vectors in rows.items():
        records += [
            Record(f"{s}_{i}", f"{s}_{i}", path, v, index=i, key=f"{s}_images", split=s) for i, v in enumerate(vectors)
        ]
    return DataSet(records, label_names, task, origin=path, notes=notes, classes=classes)
