"""Copies of training scans in 'new' data, cut and shrunk (PneumoniaMNIST holds Kermany's chest X-rays centre-cropped
to 28 px): how many meddx's evaluate check finds, beside the whole-image perceptual hash with its correlation check
(the peer: what `meddx evaluate --data` used before), on the same scans; and how many scans of other children either
calls a copy (false alarms).

    .venv/bin/python bench/crop_copies.py [--data-dir ../shared/data] [--n 1000] [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.data.leakage import overlap_with_training
from meddx.data.medmnist import read_medmnist
from meddx.data.readers import read_folder

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402


def split_table(records) -> pd.DataFrame:
    """split.csv's columns the check reads, with the perceptual hashes the run stores (the peer needs them)."""
    from meddx.data.near_duplicates import hash_records

    hash_records(records)
    return pd.DataFrame(
        [
            {
                "id": r.id,
                "patient_id": r.patient_id,
                "split": r.split,
                "source": r.source if r.index is None else f"{r.source}::{r.key}[{r.index}]",
                "sha1": None,
                "phash": r.phash,
            }
            for r in records
        ]  # fmt: skip
    )


def found(new, table) -> tuple[int, int, float]:
    """(near duplicates the hash found, crops the new check found, seconds) for `new` against a run's `table`."""
    t = time.perf_counter()
    check = overlap_with_training(new, table, drop=True)[1]
    near = check["near_duplicates_of_training"] + check["near_unconfirmed"]
    return near, check["cropped_images"] + check["cropped_test"], time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    default = Path(os.environ.get("MEDDX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--data-dir", type=Path, default=default)
    ap.add_argument("--n", type=int, default=1000, help="Kermany scans drawn as the 'new' data.")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    pneumonia = read_medmnist(args.data_dir / "medmnist" / "pneumoniamnist.npz")
    kermany = read_folder(str(args.data_dir / "chest_xray_pneumonia_224"))
    rng = np.random.default_rng(0)
    drawn = [kermany.records[i] for i in rng.choice(len(kermany.records), args.n, replace=False)]
    trained = split_table([r for r in pneumonia.records if r.split != "test"])
    nih = read_folder(str(args.data_dir / "nih_chestxray14_64px_binary"))
    patient = {r.id: r.id.split("/")[-1].split("_")[0] for r in nih.records}  # NIH names: <patient>_<visit>.png
    half = set(sorted(set(patient.values()))[::2])
    nih_table = split_table([r for r in nih.records if patient[r.id] not in half])
    rows = []
    for what, new, table, copies in (
        ("Kermany scans against a PneumoniaMNIST run (its train/val)", drawn, trained, True),
        ("PneumoniaMNIST test (other children) against the same run", [r for r in pneumonia.records
                                                                         if r.split == "test"], trained, False),
        ("NIH 64 px, half its patients against the other half", [r for r in nih.records if patient[r.id] in half],
         nih_table, False),
    ):  # fmt: skip
        near, crops, seconds = found(new, table)
        rows.append((what, len(new), near, crops, seconds, copies))
        print(f"{what}: perceptual hash {near}, crop check {crops} of {len(new)} ({seconds:.1f} s)", flush=True)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPU cores, by "
        f"`.venv/bin/python bench/crop_copies.py --n {args.n}`. PneumoniaMNIST's train and val are cut from the "
        "Kermany training folder (MedMNIST v2), its test split from Kermany's official test (other children, not in "
        "the folder). Each row is `meddx evaluate --data`'s check of new scans against a run's train/val images: the "
        "whole-image perceptual hash confirmed by correlation (the peer, the check before 2026-12-07) and the "
        "centre-crop check added beside it (`data/crop_copies.py`).",
        "",
        "| new scans | scans | are they copies? | found by the perceptual hash (peer) | found by the crop check | "
        "crop check / peer | seconds (whole check) |",
        "|---|---|---|---|---|---|---|",
    ]
    for what, n, near, crops, seconds, copies in rows:
        ratio = f"{crops / near:.1f}x" if near else ("n/a (peer 0)" if crops else "-")
        lines.append(f"| {what} | {n} | {'yes: cut from training scans' if copies else 'no: other patients'} | "
                     f"{near} ({near / n:.1%}) | {crops} ({crops / n:.1%}) | {ratio} | {seconds:.1f} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if not args.no_docs:
        print(f"wrote {write_section('crop-copies', 'Copies of training scans cut and shrunk: found or not', table)}")


if __name__ == "__main__":
    main()
