"""The leakage gate: patients, sample ids, identical and near-duplicate images on two sides of a split, and new
data checked against a run's training images."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from meddx.config import SplitConfig
from meddx.data.crop_copies import RULE as CROP_RULE
from meddx.data.crop_copies import cropped_copies
from meddx.data.images import content_hash
from meddx.data.near_duplicates import RULE as NEAR_RULE
from meddx.data.near_duplicates import near_duplicate_pairs, near_training
from meddx.data.records import SPLITS, DataSet, Record
from meddx.data.volume_copies import RULE as VOLUME_RULE
from meddx.data.volume_copies import resampled_copies
from meddx.errors import LeakageError
from meddx.logs import progress

MAX_DROP_ROUNDS = 5  # drop, check again: a looser twin shows once the copy beside it is gone


@dataclass
class LeakageReport:
    """What sits on two sides of a split: patients, sample ids, identical images."""

    shared_patients: dict[str, list[str]] = field(default_factory=dict)
    shared_ids: dict[str, list[str]] = field(default_factory=dict)
    duplicate_images: list[list[tuple[str, str]]] = field(default_factory=list)
    near_duplicates: list[list[tuple[str, str]]] = field(default_factory=list)
    near_rule: str = ""  # how near duplicates were found; "" when that check did not run
    unhashed: int = 0
    patients_known: bool = True
    actions: list[str] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)  # every copy left out of the split: {"id", "split"}

    @property
    def ok(self) -> bool:
        return not (self.shared_patients or self.shared_ids or self.duplicate_images or self.near_duplicates)

    def summary(self) -> str:
        """Human-readable lines naming what leaks."""
        if self.ok:
            msg = "no leakage: no patient, sample id or identical image on two sides of the split"
            msg += f"; no near-duplicate image ({self.near_rule})" if self.near_rule else ""
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
        if self.near_duplicates:
            lines.append(f"{len(self.near_duplicates)} near-duplicate image pair(s) on two sides ({self.near_rule}):")
            lines += ["  " + " ~ ".join(f"{i} ({s})" for i, s in group) for group in self.near_duplicates]
        return "\n".join(lines + self.actions)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "shared_patients": self.shared_patients,
            "shared_ids": self.shared_ids,
            "duplicate_images": [[{"id": i, "split": s} for i, s in g] for g in self.duplicate_images],
            "near_duplicates": [[{"id": i, "split": s} for i, s in g] for g in self.near_duplicates],
            "near_duplicate_rule": self.near_rule,
            "unhashed_files": self.unhashed,
            "patients_known": self.patients_known,
            "actions": self.actions,
            "dropped": self.dropped,
        }


def check_leakage(ds: DataSet, images: bool = True, near: bool = True) -> LeakageReport:
    """Find patients, sample ids, identical images (SHA-1) and, with `near`, near-duplicate images (perceptual hash
    confirmed by thumbnail correlation) that appear in more than one split."""
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
        for r in progress(ds.records, f"hashing {len(ds.records)} files"):
            h = r.sha1 = r.sha1 or content_hash(r)  # read once: the gate checks again after dropping copies
            if h is None:
                report.unhashed += 1
            else:
                by_hash[h].append((r.id, r.split))
        report.duplicate_images = [g for g in by_hash.values() if len({s for _, s in g}) > 1]
        if near and any(r.tokens is None for r in ds.records):
            exact = {frozenset((a, b)) for g in by_hash.values() for a, _ in g for b, _ in g if a != b}
            pairs = near_duplicate_pairs(ds.records, exact)
            report.near_duplicates = [[(a.id, a.split), (b.id, b.split)] for a, b in pairs]
            report.near_rule = NEAR_RULE
    return report


def enforce_no_leakage(ds: DataSet, cfg: SplitConfig | None = None) -> LeakageReport:
    """Run the check before training: raise on shared patients; duplicates per cfg.on_duplicate_images."""
    cfg = cfg or SplitConfig()
    report = check_leakage(ds, near=cfg.near_duplicates)
    official = any(n.startswith("splits:") and "official" in n for n in ds.notes)
    if report.shared_patients or report.shared_ids:
        hint = (
            "\nthe official splits share these patients: set split.use_official=false to split again by patient"
            if official and report.shared_patients
            else ""
        )
        raise LeakageError("leakage between splits:\n" + report.summary() + hint)
    if report.duplicate_images or report.near_duplicates:
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
            report = _drop_copies(ds, report, cfg)
        else:
            report.actions.append(
                f"warning: {len(report.duplicate_images)} identical and {len(report.near_duplicates)} near-duplicate "
                "image(s) left on two sides (on_duplicate_images=warn)"
            )
        ds.notes.extend(report.actions)
    return report


def _drop_copies(ds: DataSet, report: LeakageReport, cfg: SplitConfig) -> LeakageReport:
    """Drop the train copy of every identical or near-identical group; a group with no train copy (val and test, as
    in BreastMNIST's official splits) loses its val copy, so that the test split stays whole. Checked again until no
    copy is left: a dropped copy can have hidden a looser twin (each other's best match only once it is gone)."""
    drop: set[tuple[str, str]] = set()
    for _ in range(MAX_DROP_ROUNDS):
        groups = report.duplicate_images + report.near_duplicates
        found = {(i, s) for g in groups for i, s in g if s == "train"}
        found |= {(i, s) for g in groups if all(s != "train" for _, s in g) for i, s in g if s == "val"}
        if not found:
            break
        drop |= found
        ds.records = [r for r in ds.records if (r.id, r.split) not in found]
        rule, report = report.near_rule, check_leakage(ds, near=cfg.near_duplicates)
        report.near_rule = report.near_rule or rule
    report.actions.extend(_drop_actions(ds, report, drop))
    report.dropped = [{"id": i, "split": s} for i, s in sorted(drop, key=lambda d: (d[1], d[0]))]
    if not report.ok:
        raise LeakageError("leakage remains after dropping copies:\n" + report.summary())
    return report


def _drop_actions(ds: DataSet, report: LeakageReport, drop: set[tuple[str, str]]) -> list[str]:
    """The notes that say which copies were dropped (and, for named files without patient ids, the regex hint)."""
    actions = []
    for side in ("train", "val"):
        ids = sorted(i for i, s in drop if s == side)
        if ids:
            other = "val/test" if side == "train" else "test"
            more = f", ... and {len(ids) - 20} more (all in data.json)" if len(ids) > 20 else ""
            shown = ", ".join(ids[:20]) + more
            actions.append(f"dropped {len(ids)} {side} image(s) (near-)identical to {other} ones: {shown}")
    named_files = any(r.index is None and r.tokens is None for r in ds.records)  # an .npz has no file names
    if actions and not report.patients_known and named_files:
        actions.append(
            "patient ids are unknown (each image its own patient): copies across splits often mean one patient's "
            "images; if file names carry the patient, --patient-regex keeps them on one side"
        )
    return actions


def _own_test_copies(records: list[Record], sha1s: dict[str, str], split_table: pd.DataFrame) -> tuple[dict, set]:
    """The files that are the run's own test images again: identical (SHA-1), or re-saved, re-encoded or resized
    (perceptual hash, confirmed by correlation); kept, counted, and each test image counted once. Also their ids."""
    test = split_table[split_table["split"] == "test"]
    tested = set(test["sha1"]) if "sha1" in test else set()
    same = {r.id: sha1s[r.id] for r in records if sha1s[r.id] and sha1s[r.id] in tested}
    near: list = []
    if "phash" in test and len(test):
        hashes = {loc: h for h, loc in zip(test["phash"], test["source"]) if isinstance(h, str) and h}
        near = near_training([r for r in records if r.id not in same], hashes)[0]
    source_of = dict(zip(test["sha1"], test["source"])) if {"sha1", "source"} <= set(test) else {}
    distinct = {source_of.get(h, h) for h in same.values()} | {b for _, b in near}  # test images, each once
    found = {"same_as_test": len(same) + len(near), "same_as_test_distinct": len(distinct)}
    return found, set(same) | {r.id for r, _ in near}


def _lookalikes(records: list[Record], where: dict[str, str]) -> dict:
    """New data that looks like the run's images resampled (volumes at another depth or size; 2-D images cropped and
    resized), best matches over every split: kept in the figures, counted for train/val and for its own test split."""
    volumes, cropped = resampled_copies(records, list(where)), cropped_copies(records, list(where))
    crops = cropped["found"]
    trained = {kind: [m for m in found if where[m[1]] != "test"] for kind, found in (("v", volumes), ("c", crops))}
    return {
        "resampled_volumes": len(trained["v"]),  # volumes like train/val ones at another depth or size
        "resampled_volume_rule": VOLUME_RULE if volumes else "",
        "resampled_examples": [f"{r.id} ~ {b}" for r, b in trained["v"][:5]],
        "resampled_test": len(volumes) - len(trained["v"]),  # the run's own test volumes at another depth or size
        "cropped_images": len(trained["c"]),  # 2-D images like train/val ones cropped and resized
        "cropped_rule": CROP_RULE if crops else "",
        "cropped_examples": [f"{r.id} ~ {b}" for r, b in trained["c"][:5]],
        "cropped_test": len(crops) - len(trained["c"]),
        "cropped_unchecked": cropped["unchecked"],  # why 2-D images were not looked at (too many, unreadable): said
        "cropped_unreadable": cropped["unreadable"],  # training files not readable here: not compared
    }


def _repeats_within(records: list[Record], sha1s: dict) -> dict:
    """Files of new data identical to an earlier one of it (SHA-1), and how many of those carry another label: the
    same image scored twice, or as two classes."""
    first: dict[str, Record] = {}
    repeated = conflicting = 0
    for r in records:
        h = sha1s.get(r.id)
        if not h:
            continue
        if h in first:
            repeated += 1
            conflicting += not np.array_equal(np.nan_to_num(first[h].labels, nan=-1), np.nan_to_num(r.labels, nan=-1))
        else:
            first[h] = r
    return {"repeated_files": repeated, "repeated_other_label": conflicting}


def overlap_with_training(
    records: list[Record], split_table: pd.DataFrame, drop: bool, origin: str = "", patients_known: bool = True
) -> tuple[list[Record], dict]:
    """New labelled data checked against a run's train and val images (split.csv's hashes): files identical (SHA-1)
    or near-identical (perceptual hash, confirmed while the training file is readable) stop the evaluation
    (LeakageError), or with `drop` are left out; shared patient ids are counted when the data has any
    (`patients_known`: not MedMNIST's `train_0` or a file name standing for its own image). Returns the records kept
    and the check for the report. `origin` (the new data's file) opens the error."""
    seen = split_table[split_table["split"].isin(["train", "val"])]
    known = dict(zip(seen["sha1"], seen["id"])) if "sha1" in seen else {}
    sha1s = {r.id: r.sha1 or content_hash(r) for r in records}  # hashed already when the leakage gate read them
    same = [(r, known[h]) for r in records if (h := sha1s[r.id]) and h in known]
    near, unconfirmed = [], 0
    if "phash" in seen:
        rest = [r for r in records if r.id not in {a.id for a, _ in same}]
        hashes = {loc: h for h, loc in zip(seen["phash"], seen["source"]) if isinstance(h, str) and h}
        near, unconfirmed = near_training(rest, hashes)
    found = same + near
    copies = {r.id for r, _ in found}  # their patients are counted only among the files kept
    own_test, test_copies = _own_test_copies([r for r in records if r.id not in copies], sha1s, split_table)
    where = dict(zip(split_table["source"], split_table["split"])) if "source" in split_table else {}
    rest = [r for r in records if r.id not in copies | test_copies]  # a copy counted already is not 'resampled'
    lookalikes = _lookalikes(rest, where)
    ids = {r.patient_id for r in records if r.id not in copies} if known and patients_known else set()
    patients = sorted(ids & set(seen["patient_id"].astype(str)))
    check = {
        "checked": bool(known),
        "near_duplicate_rule": NEAR_RULE if "phash" in seen else "",
        "files": len(records),
        "identical_to_training": len(same),
        "near_duplicates_of_training": len(near),
        "near_unconfirmed": unconfirmed,  # candidates whose training file is not readable here: kept, and said
        **lookalikes,
        "examples": [f"{r.id} = {b}" for r, b in same[:5]] + [f"{r.id} ~ {b}" for r, b in near[:5]],
        "shared_patient_ids": len(patients),
        **_repeats_within([r for r in records if r.id not in copies], sha1s),
        "patients_known": bool(patients_known),  # False: no patient of this data could be matched with training's
        **own_test,
        "dropped": 0,
    }
    if found and not drop:
        kind = "report" if records[0].tokens is not None else "image"  # token sequences: identical descriptions
        raise LeakageError(
            f"{origin + ': ' if origin else ''}{len(found)} of {len(records)} {kind}(s) are identical ({len(same)}) "
            f"or near-identical ({len(near)}) to the run's training/val {kind}s (e.g. "
            f"{', '.join(check['examples'][:3])}); evaluate on data the model never saw, or leave them out "
            "(the default: --drop-training-overlap, evaluate.on_training_overlap=drop)"
        )
    if found:
        ids = {r.id for r, _ in found}
        records = [r for r in records if r.id not in ids]
        check["dropped"] = len(found)
    return records, check
