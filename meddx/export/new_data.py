"""The input-domain check over a new labelled set (`meddx evaluate RUN --data OTHER`): how many of its scans fall
outside the training scans, the check `meddx serve` makes on each upload, so a reviewer learns it before the AUC."""

from __future__ import annotations

import json
from collections import Counter

from meddx.data.fingerprint import dicom_modality
from meddx.data.images import is_colour, read_pixels, to_channels
from meddx.data.records import Record, spread_evenly
from meddx.data.tensors import volume_depth
from meddx.errors import MeddxError
from meddx.export.domain import STATS_VERSION, check_input
from meddx.export.package import training_input_stats
from meddx.run import Run

FLAGGED = 20  # scans outside the training domain named (predictions/<split>.data.json keeps them)


def _reason(warning: str) -> str:
    """A warning without its figures, to count alike ones together ('colour image', 'the image looks inverted')."""
    return warning.split(":")[0].split(" (")[0]


def _training_stats(run: Run) -> dict:
    """The training scans' input statistics: the run's package's (export wrote them) unless an older meddx wrote them
    and the scans can be read again, else read from the scans."""
    saved = run.path / "package" / "input_stats.json"
    stats = json.loads(saved.read_text()) if saved.is_file() else None
    if stats is not None and stats.get("version", 1) >= STATS_VERSION:
        return stats
    try:
        return training_input_stats(run)
    except (MeddxError, OSError, ValueError):
        if stats is None:
            raise
        return stats  # the training scans moved: the checks the package knows


def new_data_domain(run: Run, records: list[Record], limit: int = 300) -> dict:
    """{checked, outside, reasons: [(reason, count)]} over an even sample of up to `limit` scans of new data; an
    empty check for token sequences."""
    if run.is_sequence or not records:
        return {"checked": 0, "outside": 0, "reasons": []}
    try:
        stats = _training_stats(run)
    except (MeddxError, OSError, ValueError) as e:  # a run moved without its training data: evaluated all the same
        return {"checked": 0, "outside": 0, "reasons": [], "skipped": f"training scans not readable ({e})"[:300]}
    prep = run.preprocess
    sample = spread_evenly(records, limit)
    reasons: Counter = Counter()
    outside, flagged = 0, []
    for r in sample:
        pixels, layout = read_pixels(r, prep.dicom_window)
        image = to_channels(pixels, layout, r, prep.views, prep.view_axis, prep.channels, prep.view_depth)
        colour, modality = is_colour(pixels, layout), dicom_modality(r.source)
        depth = volume_depth(pixels, layout, prep.view_axis)
        found = check_input(image, prep.resize(image), stats, colour, modality, depth)["warnings"]
        outside += bool(found)
        reasons.update({_reason(w) for w in found})
        flagged += [f"{r.id} ({_reason(found[0])})"] if found and len(flagged) < FLAGGED else []
    return {"checked": len(sample), "outside": outside, "reasons": reasons.most_common(3), "flagged": flagged}
