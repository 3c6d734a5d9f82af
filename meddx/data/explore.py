"""`explore`: what is in a data set before any training: counts, patients, labels, files, sizes, duplicates."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from meddx.atomic import write_text
from meddx.data.images import content_hash, read_pixels
from meddx.data.records import SPLITS, DataSet
from meddx.errors import DataError


def explore(ds: DataSet, read_images: bool = True) -> dict:
    """Summary of a data set as plain data (JSON-ready)."""
    recs = ds.records
    per_patient = Counter(r.patient_id for r in recs)
    labels = ds.labels
    ids = Counter(r.id for r in recs)
    out: dict = {
        "origin": ds.origin,
        "task": ds.task,
        "rows": len(recs),
        "patients": len(per_patient),
        "patients_known": ds.patients_known,
        "images_per_patient": _describe(list(per_patient.values())),
        "splits": dict(Counter(r.split or "(none)" for r in recs)),
        "labels": {
            n: {
                "positives": int(np.nansum(labels[:, j])),
                "negatives": int(np.sum(labels[:, j] == 0)),
                "missing": int(np.isnan(labels[:, j]).sum()),
            }
            for j, n in enumerate(ds.label_names)
        },
        "duplicate_ids": sorted(i for i, c in ids.items() if c > 1)[:50],
        "notes": list(ds.notes),
    }
    _by_split(ds, out)
    if ds.task == "multilabel":
        out["label_cardinality"] = float(np.nanmean(np.nansum(labels, axis=1))) if len(labels) else 0.0
        out["no_positive_label"] = int(np.sum(np.nansum(labels, axis=1) == 0))
    if read_images:
        sizes, chans, missing, unreadable = Counter(), Counter(), [], []
        by_hash: dict[str, list[str]] = defaultdict(list)
        for r in recs:
            if r.index is None and not Path(r.source).is_file():
                missing.append(f"{r.row}: {r.source}" if r.row else r.source)  # where it was looked for
                continue
            try:
                pixels, layout = read_pixels(r)
            except DataError as e:
                unreadable.append(str(e))
                continue
            shape = pixels.shape
            chans[1 if layout == "hw" else shape[-1] if layout == "hwc" else shape[0]] += 1
            sizes["x".join(str(s) for s in (shape if layout == "dhw" else shape[:2]))] += 1
            by_hash[content_hash(r)].append(r.id)
        out["files"] = {
            "missing": len(missing),
            "missing_examples": missing[:10],
            "unreadable": len(unreadable),
            "unreadable_examples": unreadable[:10],
            "sizes": dict(sizes.most_common(10)),
            "distinct_sizes": len(sizes),
            "channels_or_depth": {str(k): v for k, v in chans.items()},
            "duplicate_images": [g for g in by_hash.values() if len(g) > 1][:50],
            "duplicate_image_groups": sum(1 for g in by_hash.values() if len(g) > 1),
        }
    return out


def _by_split(ds: DataSet, out: dict) -> None:
    """Each label's positives per split (2 in train and 50 in test is its own lesson) and the patients in several."""
    given = {r.split for r in ds.records if r.split}
    splits = [s for s in SPLITS if s in given] + sorted(given - set(SPLITS))
    if len(splits) < 2:
        return
    for j, n in enumerate(ds.label_names):
        column = ds.labels[:, j]
        out["labels"][n]["by_split"] = {s: int(np.nansum(column[[r.split == s for r in ds.records]])) for s in splits}
    sides = defaultdict(set)
    for r in ds.records:
        sides[r.patient_id].add(r.split)
    out["patients_in_several_splits"] = sum(len(v) > 1 for v in sides.values()) if ds.patients_known else None


def _describe(values: list[int]) -> dict:
    if not values:
        return {}
    a = np.asarray(values)
    return {"min": int(a.min()), "median": float(np.median(a)), "mean": round(float(a.mean()), 3), "max": int(a.max())}


RARE = 10  # fewer positives than this to train on: too few to learn the label well


def rare_labels(summary: dict) -> list[str]:
    """Labels with fewer than RARE positives to train on (the train split's, else all), or none in a split: said
    before training."""
    out = []
    for n, v in summary["labels"].items():
        by = v.get("by_split", {})
        empty, learnt = [k for k, c in by.items() if c == 0], by.get("train", v["positives"])
        if learnt < RARE or empty:
            where = f"; none in {', '.join(empty)}" if empty else ""
            out.append(f"{n}: {learnt} positive(s){' in train' * ('train' in by)}{where}")
    return out


def _share(v: dict) -> str:
    known = v["positives"] + v["negatives"]
    return f"{v['positives'] / known:.1%}" if known else "n/a"


def to_markdown(summary: dict) -> str:
    """The explore summary as a Markdown document."""
    s = summary
    lines = [
        f"# Data set: `{s['origin']}`",
        "",
        f"- task: {s['task']}; rows: {s['rows']}; patients: {s['patients']}"
        + ("" if s["patients_known"] else " (no patient ids: each image is its own patient)"),
        f"- images per patient: {s['images_per_patient']}",
        f"- splits: {s['splits']}",
        f"- duplicate sample ids: {len(s['duplicate_ids'])}",
    ]
    if "label_cardinality" in s:
        lines.append(
            f"- labels per sample: {s['label_cardinality']:.3f}; "
            f"samples with no positive label: {s['no_positive_label']}"
        )
    if s.get("patients_in_several_splits"):
        lines.append(
            f"- patients in more than one split: {s['patients_in_several_splits']} (`meddx check-leakage` names them; "
            "training stops on them, or drops patients guessed from file names from the earlier split)"
        )
    lines += [f"- rare label: {w}" for w in rare_labels(s)]
    lines += [
        "",
        "| label | positives | negatives | missing | prevalence | positives by split |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {v['positives']} | {v['negatives']} | {v['missing']} | {_share(v)} | "
        f"{', '.join(f'{k} {c}' for k, c in v.get('by_split', {}).items())} |"
        for n, v in s["labels"].items()
    ]
    if "files" in s:
        f = s["files"]
        everything = f["missing"] and f["missing"] == s["rows"]
        lines += [
            "",
            "## Files",
            "",
            f"- missing: {f['missing']} {f['missing_examples'][:3]}"
            + ("; none of the paths exist as written: name the folder they are relative to with --root" * everything),
            f"- unreadable: {f['unreadable']} {f['unreadable_examples'][:3]}",
            f"- sizes (top 10): {f['sizes']}; distinct sizes: {f['distinct_sizes']}",
            f"- channels (or stack depth): {f['channels_or_depth']}",
            f"- groups of identical images: {f['duplicate_image_groups']}",
        ]
    if "sequences" in s:
        lines += _sequence_lines(s["sequences"])
    lines += [""] + [f"- note: {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"


def _sequence_lines(q: dict) -> list[str]:
    """The sequences part of the Markdown summary."""
    lines = [
        "",
        "## Sequences",
        "",
        f"- length: {q['length']}",
        f"- length histogram: {q['length_histogram']}",
        f"- distinct tokens: {q['distinct_tokens']}",
        f"- empty label (normal): {q['empty_label_rows']} rows ({q['empty_label_share']:.1%}); label cardinality "
        f"{q['label_cardinality']}; labels per row: {q['label_count_distribution']}",
        f"- duplicate descriptions: {q['duplicate_description_groups']} group(s), "
        f"{q['rows_in_duplicate_groups']} rows, "
        f"{q['duplicates_with_different_labels']} with different labels",
    ]
    lines += [f"- vs {name}: {v}" for name, v in q["other_sets"].items()]
    return lines


def summary_table(summary: dict):
    """A rich table of the labels: positives, negatives and missing values per label."""
    from rich.table import Table

    table = Table(
        title=f"{summary['origin']}: {summary['rows']} rows, {summary['patients']} patients, {summary['task']}"
    )
    split = any("by_split" in v for v in summary["labels"].values())
    for col in ("label", "positives", "negatives", "missing", "prevalence", *(["positives by split"] * split)):
        table.add_column(col)
    for n, v in summary["labels"].items():
        by = [", ".join(f"{k} {c}" for k, c in v.get("by_split", {}).items())] * split
        table.add_row(n, str(v["positives"]), str(v["negatives"]), str(v["missing"]), _share(v), *by)
    return table


def write_explore(summary: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write explore.json and explore.md into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "explore.json", json.dumps(summary, indent=2))
    write_text(out / "explore.md", to_markdown(summary))
    return out / "explore.json", out / "explore.md"
