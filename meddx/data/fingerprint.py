"""The data set's fingerprint (nnU-Net's word): what the plan decides from. Counts, patients and labels come from
every record; sizes, channels, bit depth, intensities and modality from an even sample of decoded images."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from meddx.data.images import DICOM_EXTENSIONS, is_colour, load_array_file, read_array_file, read_pixels
from meddx.data.records import SPLITS, DataSet, Record, spread_evenly
from meddx.errors import DataError

SAMPLE = 300  # images decoded for sizes and intensities; enough for stable medians and percentiles


def _bits(record: Record) -> int | None:
    """Stored bits per pixel of the file (8, 16, 32 for floats), without decoding it where the header tells."""
    path = Path(record.source)
    try:
        if record.index is not None or path.suffix.lower() in (".npy", ".npz"):
            read = load_array_file if record.index is not None else read_array_file
            return int(read(str(path), record.key).dtype.itemsize * 8)
        if path.suffix.lower() in DICOM_EXTENSIONS:
            import pydicom

            return int(pydicom.dcmread(str(path), stop_before_pixels=True).get("BitsStored", 16))
        from PIL import Image

        with Image.open(path) as im:
            return 16 if im.mode in ("I;16", "I;16B", "I", "F") else 8
    except Exception:  # noqa: BLE001 - a header we cannot read leaves the bit depth unknown, decoding will say why
        return None


def dicom_modality(path: str | Path) -> str | None:
    """The DICOM Modality tag (CT, MR, CR, DX, NM, PT, US, ...); None for other files or a header that cannot say."""
    if Path(path).suffix.lower() not in DICOM_EXTENSIONS:
        return None
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
        return str(header.get("Modality", "")) or None
    except Exception:  # noqa: BLE001 - an unreadable header is the image reader's to report
        return None


def _describe(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "p10": float(np.percentile(v, 10)),
        "p90": float(np.percentile(v, 90)),
    }


def image_statistics(records: list[Record], sample: int = SAMPLE) -> dict:
    """Sizes, channels, layout, colour, bit depth, intensity use and modality of an even sample of images."""
    chosen = spread_evenly(records, sample)
    heights, widths, depths, maxima, means, layouts, colour, unreadable = [], [], [], [], [], Counter(), 0, []
    for r in list(chosen):
        try:
            pixels, layout = read_pixels(r)
        except DataError as e:  # decoding every image later names all the unreadable ones in one line
            unreadable.append(str(e))
            chosen.remove(r)
            continue
        layouts[layout] += 1
        spatial = pixels.shape[-3:-1] if layout == "hwc" else pixels.shape[-2:]
        heights.append(spatial[0])
        widths.append(spatial[1])
        depths.append(pixels.shape[0] if layout == "dhw" else (pixels.shape[-1] if layout == "hwc" else 1))
        colour += is_colour(pixels, layout)
        maxima.append(float(np.max(pixels)))
        means.append(float(np.mean(pixels)))
    if not chosen:
        raise DataError(f"{len(unreadable)} image(s) sampled and none can be read: {unreadable[0]}")
    bits = Counter(b for b in (_bits(r) for r in chosen[:20]) if b)
    modalities = Counter(m for m in (dicom_modality(r.source) for r in chosen[:20]) if m)
    maxima_arr = np.asarray(maxima)
    return {
        "sampled": len(chosen),
        "unreadable": len(unreadable),
        "layout": layouts.most_common(1)[0][0],
        "height": _describe(heights),
        "width": _describe(widths),
        "depth": _describe(depths),
        "colour_share": colour / len(chosen),
        "bits": bits.most_common(1)[0][0] if bits else None,
        "modality": modalities.most_common(1)[0][0] if modalities else None,
        # intensities on meddx's [0, 1] scale (integers divided by their type's maximum)
        "max_intensity": _describe(maxima),
        "mean_intensity": _describe(means),
        "max_intensity_cv": float(maxima_arr.std() / maxima_arr.mean()) if maxima_arr.mean() > 0 else 0.0,
    }


def fingerprint(ds: DataSet, sample: int = SAMPLE) -> dict:
    """Everything the plan reads about a data set: task, labels, splits, patients, and the train split's balance and
    (images) sampled image statistics, or (token sequences) lengths; val and test inform no choice."""
    train = [r for r in ds.records if r.split == "train"] or ds.records  # before the split: every record
    labels = np.stack([r.labels for r in train]).astype(np.float32) if train else ds.labels
    per_patient = Counter(r.patient_id for r in ds.records)
    positives = np.nansum(labels, axis=0)
    out = {
        "origin": ds.origin,
        "task": ds.task,
        "label_names": ds.label_names,
        "samples": len(ds.records),
        "splits": {s: sum(r.split == s for r in ds.records) for s in SPLITS if any(r.split == s for r in ds.records)},
        "patients": len(per_patient),
        "patients_known": ds.patients_known,
        "patients_guessed": ds.patients_guessed,
        "images_per_patient": _describe(list(per_patient.values())),
        "positive_share": {
            n: float(positives[j] / max(np.sum(~np.isnan(labels[:, j])), 1)) for j, n in enumerate(ds.label_names)
        },
        "statistics_of": "train" if train is not ds.records else "all samples",
        "notes": list(ds.notes),  # how the data was read: copies dropped, splits, columns, guessed patients
        "kind": "sequence" if ds.records and ds.records[0].tokens is not None else "image",
    }
    if out["kind"] == "sequence":
        out["tokens"] = _describe([len(r.tokens) for r in train])
    else:
        out["images"] = image_statistics(train, sample)
    return out
