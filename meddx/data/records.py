"""The one record type every reader returns and every later stage reads."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Literal

import numpy as np
import pandas as pd

from meddx.errors import DataError

Task = Literal["binary", "multiclass", "multilabel"]
NEGATIVE_CLASS = re.compile(  # class names that name the negative of two (`0_normal`, `HC`, `No Finding`)
    r"(\d+[ _-]*)?(normal|healthy|negative|benign|controls?|hc|no[ _-]?findings?)", re.IGNORECASE
)
SPLITS = ("train", "val", "test")
PSEUDO_PREFIX = "pseudo:"  # the id of an unlabelled report added to train with pseudo-labels: pseudo:<file>:<id>


@dataclass
class Record:
    """One sample: id, patient, where its pixels are, its label vector, and its official split if any."""

    id: str
    patient_id: str
    source: str
    labels: np.ndarray
    index: int | None = None
    key: str | None = None
    split: str | None = None
    row: str | None = None
    tokens: np.ndarray | None = None  # token ids of a text/sequence sample (images leave it None)
    sha1: str | None = None  # content hash, once the leakage check has read the file (split.csv keeps it)
    phash: str | None = None  # perceptual hash, once the near-duplicate check has decoded it (split.csv keeps it)

    @property
    def location(self) -> str:
        """Where the pixels are: the file, or `file::key[index]` for one image of an array file (split.csv's source)."""
        return self.source if self.index is None else f"{self.source}::{self.key}[{self.index}]"


def absolute_location(record: Record) -> str:
    """A record's location with an absolute file path (split.csv's source): the run's copy check and input-domain
    statistics read the training files from any working folder."""
    return replace(record, source=os.path.abspath(record.source)).location if record.source else record.location


@dataclass
class DataSet:
    """Records plus what travels with the data: task kind and label names."""

    records: list[Record]
    label_names: list[str]
    task: Task
    origin: str = ""
    notes: list[str] = field(default_factory=list)
    patients_guessed: str | None = None  # how patients were guessed: the file-name regex or class subfolders
    classes: list[str] = field(default_factory=list)  # the class names labels came from (binary: both), if any

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        """(N, L) float label matrix."""
        if not self.records:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return np.stack([r.labels for r in self.records]).astype(np.float32)

    @property
    def patients_known(self) -> bool:
        """False when each sample stands for its own patient (no patient ids in the source: the id, or the file name's
        stem as a folder read without a patient regex gives)."""
        return bool(self.patients_guessed) or any(r.patient_id not in (r.id, PurePath(r.id).stem) for r in self.records)

    def subset(self, split: str) -> DataSet:
        """The records of one split, same label names and task."""
        records = [r for r in self.records if r.split == split]
        return DataSet(
            records, self.label_names, self.task, self.origin, patients_guessed=self.patients_guessed,
            classes=list(self.classes),
        )  # fmt: skip

    def to_frame(self) -> pd.DataFrame:
        """One row per record: id, patient_id, split, source and a column per label."""
        df = pd.DataFrame(
            {
                "id": [r.id for r in self.records],
                "patient_id": [r.patient_id for r in self.records],
                "split": [r.split for r in self.records],
                "source": [absolute_location(r) for r in self.records],
            }
        )
        for name in ("sha1", "phash"):
            if any(getattr(r, name) for r in self.records):
                df[name] = [getattr(r, name) or "" for r in self.records]
        lab = self.labels
        for j, name in enumerate(self.label_names):
            df[name] = lab[:, j] if len(lab) else []
        return df

    def label_mismatch(self, names: list[str], task: str) -> str | None:
        """None when the data set has these labels and task; otherwise one short line saying how they differ."""
        if self.label_names == names and self.task == task:
            return None

        def text(ns: list[str], t: str) -> str:
            return f"{len(ns)} {t} labels ({', '.join(ns) if len(ns) <= 6 else f'{ns[0]} ... {ns[-1]}'})"

        same_shape = len(self.label_names) == len(names) and self.task == task  # else a pairwise detail misleads
        differ = [(a, b) for a, b in zip(self.label_names, names) if a != b and same_shape]
        detail = f"; {differ[0][0]!r} where the run has {differ[0][1]!r}" if differ else ""
        return f"{text(self.label_names, self.task)} differ from the run's {text(names, task)}{detail}"

    def align_labels(self, names: list[str]) -> bool:
        """Take `names` (a run's labels) when this data's labels are the same names in another case, whatever their
        order (`pneumonia/` for `PNEUMONIA`): every label vector is reordered to match. True when aligned."""
        mine = [n.casefold() for n in self.label_names]
        theirs = [n.casefold() for n in names]
        if len(set(mine)) != len(mine) or sorted(mine) != sorted(theirs):
            return False
        order = [mine.index(n) for n in theirs]
        for r in self.records:
            r.labels = np.asarray(r.labels)[order]
        spelt = [self.label_names[i] for i in order]  # this data's own spelling of each of `names`
        if respelled := [f"'{a}' as '{b}'" for a, b in zip(spelt, names) if a != b]:
            self.notes.append(f"labels read in the run's spelling: {', '.join(respelled)}")
        self.label_names = list(names)
        return True

    def class_indices(self) -> np.ndarray:
        """Integer targets: argmax for multi-class, the 0/1 value for binary."""
        lab = self.labels
        return lab.argmax(1) if self.task == "multiclass" else lab[:, 0].astype(int)


def normalise_class_names(values: list[str]) -> tuple[dict[str, str], list[str]]:
    """{name as written: class name}: spaces around a name removed, and spellings that differ only in case ('hc',
    'HC') read as the most frequent one; the notes say what was changed, so nothing is merged silently."""
    counts = Counter(v.strip() for v in values)
    spellings: dict[str, list[str]] = defaultdict(list)
    for name in counts:
        spellings[name.casefold()].append(name)
    canonical, notes = {}, []
    for names in spellings.values():
        main = max(names, key=lambda n: (counts[n], n))
        canonical.update({n: main for n in names})
        if len(names) > 1:
            rows = ", ".join(f"'{n}' {counts[n]}" for n in sorted(names))
            notes.append(f"class names differing only in case read as '{main}' (rows: {rows})")
    padded = sum(v != v.strip() for v in values)
    if padded:
        notes.append(f"{padded} class name(s) with spaces around them: spaces removed")
    return {v: canonical[v.strip()] for v in set(values)}, notes


def spread_evenly(items: list, limit: int) -> list:
    """Up to `limit` of the items, evenly spaced over all of them (401 items: not the first 300 but every 4th-ish)."""
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


class UnknownPositiveClass(DataError):
    """data.positive_class names none of the data's classes."""


def class_labels(
    names: list[str],
    positive_class: str | None,
    where: str,
    notes: list[str] | None = None,
    rows: list[str] | None = None,
    known: list[str] | None = None,
) -> tuple[list[str], Task, dict]:
    """Label names, task and a class-name -> label-vector map for one column of class names. Of two classes the
    positive is `positive_class`, else the one that is not named like a negative (normal, healthy, benign, control,
    HC, ...: a note in `notes` says so when that is not the last in sorted order), else the last in sorted order.
    A class of one or two samples beside a class 50 times larger is a typo or a stray file: an error naming its
    `rows` (each sample's row or file). `known` classes (a run's) count though absent when every class found is
    one of them: a set of normals reads."""
    spelled = known_spellings(names, known)
    if spelled is None:  # other names (`0/ 1/` for NORMAL/PNEUMONIA): read as they are
        known, spelled = None, {}
    if (respelled := sorted(f"'{n}' as '{k}'" for n, k in spelled.items() if n != k)) and notes is not None:
        notes.append(f"class names read in the run's spelling: {', '.join(respelled)}")
    names = [spelled.get(n, n) for n in names]
    classes = sorted(set(names) | set(known or []))
    if len(classes) < 2:
        raise DataError(f"{where}: only one class found ({classes}); need at least two")
    stray_class(names, where, rows, allowed=known)
    if len(classes) == 2:
        negative = [c for c in classes if NEGATIVE_CLASS.fullmatch(c.strip())]
        named = next(c for c in classes if c != negative[0]) if len(negative) == 1 else classes[-1]
        positive = positive_class or named
        if positive_class is None and positive != classes[-1] and notes is not None:
            notes.append(f"positive class '{positive}': '{negative[0]}' names the negative (data.positive_class)")
        same = [c for c in classes if c.casefold() == positive.casefold()]  # `pneumonia/` for PNEUMONIA
        positive = positive if positive in classes or len(same) != 1 else same[0]
        if positive not in classes:
            raise UnknownPositiveClass(f"{where}: positive_class '{positive}' is not one of the classes {classes}")
        vec = {c: np.array([float(c == positive)], np.float32) for c in classes}
        return [positive], "binary", vec | {n: vec[k] for n, k in spelled.items()}
    eye = np.eye(len(classes), dtype=np.float32)
    vec = {c: eye[i] for i, c in enumerate(classes)}
    return classes, "multiclass", vec | {n: vec[k] for n, k in spelled.items()}


def known_spellings(found: list[str], known: list[str] | None) -> dict[str, str] | None:
    """Each class found spelled as the known class (a run's) it names in any case (`normal` -> NORMAL); None when
    there are no known classes or a class found is none of them."""
    spelled = {n: k for k in known or [] for n in set(found) if n.casefold() == k.casefold()}
    return spelled if known and len(spelled) == len(set(found)) else None


def merge_classes(found: list[str], known: list[str] | None) -> list[str]:
    """The classes of data (`found`) and of its task (`known`, a run's): the known ones when every class found is
    one of them (as `class_labels` reads them), else those found."""
    return sorted(set(known)) if known_spellings(found, known) is not None else sorted(set(found))


SHOWN = 10  # stray classes a stray-class error names (a column of free text has hundreds)


def stray_class(names: list[str], where: str, rows: list[str] | None, allowed: list[str] | None = None) -> None:
    """A DataError naming every class of one or two samples beside one 50 times larger (a typo) with its rows; a
    class of `allowed` (a run's, in new data: 2 positives among 100 normals) is never one."""
    counts = Counter(names)
    largest = max(counts.values())
    stray = [c for c, n in sorted(counts.items(), key=lambda kv: kv[1]) if n <= 2 and 50 * n <= largest]
    stray = [c for c in stray if c not in (allowed or [])]
    if not stray:
        return
    said, more = [], f" and {len(stray) - SHOWN} more" if len(stray) > SHOWN else ""
    for name in stray[:SHOWN]:
        at = [rows[i] for i, v in enumerate(names) if v == name] if rows else []
        said.append(f"'{name}' has {counts[name]} sample(s){' (' + '; '.join(at) + ')' if at else ''}")
    others = ", ".join(f"'{c}' {k}" for c, k in counts.most_common() if c not in stray)
    what = "class " if len(stray) == 1 else "classes "
    raise DataError(
        f"{where}: {what}{', '.join(said)}{more} against {others}: a typo or a stray file? Correct or remove it"
    )


def file_record(path: str | Path) -> Record:
    """A label-less record for a single file (prediction on new scans), named by its path as given: `a/x.png` and
    `b/x.png` stay two ids, as in `meddx predict`."""
    p = str(path)
    return Record(id=p, patient_id=p, source=p, labels=np.zeros(0, dtype=np.float32))
