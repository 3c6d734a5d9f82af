"""An ensemble of members trained at different image sizes made one model (`meddx ensemble` of a 28 px small CNN
and a 64 px ResNet): the input size it takes, and its val/test predictions computed by that one model, each member
adapted (models/ensemble.py `adapted`), so that what is evaluated is what `predict`, exports and the service run."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from torch.utils.data import DataLoader

from meddx.data.images import load_image
from meddx.errors import DataError
from meddx.models.output import predict_proba
from meddx.run import Run

MAX_SIDE = 512  # the scans' own size is the input up to this side (or the largest member's, if larger)
PROBE = 20  # scans read to learn whether they share one size


def input_size(lead: Run) -> tuple[tuple[int, int], str]:
    """(size, why): the scans' own size when the probed ones share one, not too large (each member resizes from it
    exactly as it did alone); else the largest member's (`lead`), from which the others resize again."""
    prep, largest = lead.preprocess, tuple(lead.preprocess.image_size)
    args = (prep.views, prep.view_axis, prep.channels, prep.dicom_window, prep.view_depth)
    records = (lead.records("val") + lead.records("test"))[:PROBE]
    try:
        shapes = {tuple(load_image(r, *args).shape[1:]) for r in records}
    except (DataError, OSError) as e:
        raise DataError(f"members at other image sizes: the ensemble reads its scans again ({e})") from None
    if len(shapes) == 1 and max(native := shapes.pop()) <= max(MAX_SIDE, *largest):
        return native, f"the scans' own size {native[0]}x{native[1]}: each member resizes from it as it did alone"
    why = "scans of several sizes" if len(shapes) > 1 else f"scans larger than {MAX_SIDE} px"
    return largest, f"the largest member's size ({why}): the others resize from it, close to their own resizing"


def write_input(lead: Run, out_prep: str) -> dict:
    """The ensemble's preprocess.json (the lead member's, at `input_size`) and what to record of it."""
    size, why = input_size(lead)
    replace(lead.preprocess, image_size=size).save(out_prep)
    return {"size": list(size), "why": why}


def member_predictions(run: Run, split: str) -> tuple[list, list[np.ndarray]]:
    """The records of one of the ensemble's own splits (its scans read again) and each adapted member's
    probabilities on them."""
    try:
        records = run.records(split)
        data = run.dataset(records)
    except (DataError, OSError) as e:
        raise DataError(f"{run.path}: members at other image sizes are predicted again on '{split}' ({e})") from None
    loader = DataLoader(data, batch_size=256)
    return records, [predict_proba(m, loader, run.task, len(run.label_names)) for m in run.model.members]


def largest_gap(member: Run, records: list, adapted: np.ndarray, split: str) -> float:
    """How far a member's adapted probabilities lie from its own run's on `split` (0: adapted exactly)."""
    frame = member.predictions(split).set_index("id")
    own = frame.reindex([r.id for r in records])[[f"p_{n}" for n in member.label_names]].to_numpy(np.float64)
    return round(float(np.nanmax(np.abs(own - adapted))), 6)
