"""A gallery over one split: the most confident true positives, false positives and false negatives with their maps."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from meddx.atomic import write_text
from meddx.data.readers import read_dataset
from meddx.data.records import SPLITS
from meddx.errors import DataError
from meddx.evaluation.external import read_external
from meddx.evaluation.operating import run_operating_point
from meddx.explain.gradcam import Explainer, grey_png, save_png
from meddx.run import PREDICTIONS, Run, read_json

GROUPS = (
    ("true positives", "highest probability among positives called positive"),
    ("false positives", "highest probability among negatives called positive"),
    ("false negatives", "lowest probability among positives called negative"),
)


def pick_cases(y: np.ndarray, p: np.ndarray, threshold: float, k: int) -> dict[str, np.ndarray]:
    """Row indices of the k most telling cases in each group."""
    pos, called = y >= 0.5, p >= threshold
    tp, fp, fn = np.flatnonzero(pos & called), np.flatnonzero(~pos & called), np.flatnonzero(pos & ~called)
    return {
        "true positives": tp[np.argsort(-p[tp], kind="stable")][:k],
        "false positives": fp[np.argsort(-p[fp], kind="stable")][:k],
        "false negatives": fn[np.argsort(p[fn], kind="stable")][:k],
    }


def _split_records(run: Run, split: str) -> list:
    """The records of one of the run's splits, or of new data it evaluated (`evaluate --data`: read again from the
    path and options its predictions/<split>.data.json keeps)."""
    if split in SPLITS:
        return read_dataset(run.config.data, check_files=False).records
    source = read_json(run.path / PREDICTIONS / f"{split}.data.json")
    if not source.get("path"):
        raise DataError(f"{run.path}: split '{split}' names no data to read its scans from ({split}.data.json)")
    return read_external(run, {"path": source["path"], **source.get("options", {})}).records


def gallery(
    run: Run | str | Path,
    split: str = "test",
    label: str | None = None,
    k: int = 6,
    out_dir: str | Path | None = None,
    layer: str | None = None,
) -> Path:
    """Write out_dir/index.html (default RUN/explain/gallery-<split>-<label>/) with scans and Grad-CAM overlays."""
    run = run if isinstance(run, Run) else Run(run)
    explainer = Explainer.from_run(run, layer)
    j = explainer.label_index(label)
    name = run.label_names[j]
    out = Path(out_dir) if out_dir else run.path / "explain" / f"gallery-{split}-{name}"
    out.mkdir(parents=True, exist_ok=True)
    preds = run.predictions(split)
    thresholds, rule = run_operating_point(run)  # multi-class: one-vs-rest at 0.5
    t = thresholds[name]
    chosen = pick_cases(preds[name].to_numpy(), preds[f"p_{name}"].to_numpy(), t, k)
    wanted = {preds["id"].iloc[i] for rows in chosen.values() for i in rows}
    records = {r.id: r for r in _split_records(run, split) if r.id in wanted}
    if missing := sorted(wanted - set(records)):
        raise DataError(f"{run.path}: {len(missing)} scan(s) of split '{split}' are no longer where it was read "
                        f"(e.g. {', '.join(missing[:3])}): moved, renamed or read with other options")  # fmt: skip
    e = html.escape
    decision = "the most probable class" if rule == "argmax" else f"threshold {t:.4g} ({e(rule)}, chosen on val)"
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>Grad-CAM gallery: {e(run.path.name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:.4em;text-align:center}"
        "img{width:200px;image-rendering:pixelated;border:1px solid #ccc}"
        "figcaption{font-size:12px;max-width:410px}</style>",
        f"<h1>Grad-CAM gallery: {e(run.path.name)}</h1>",
        f"<p>Split <b>{e(split)}</b>, label <b>{e(name)}</b>, {decision}; layer "
        f"<code>{e(explainer.layer_name)}</code>. Each case: the scan, then the map for <b>{e(name)}</b> over it.</p>",
    ]
    for group, why in GROUPS:
        rows = chosen[group]
        parts.append(f"<h2>{e(group)} ({len(rows)})</h2><p>{e(why)}</p>")
        if not len(rows):
            parts.append("<p><i>none in this split</i></p>")
        for i in rows:
            sid = preds["id"].iloc[i]
            original = explainer.original(records[sid])
            image, _, prob = explainer.explain(original, name)
            stem = f"{''.join(w[0] for w in group.split())}-{sid}".replace("/", "_")
            save_png(grey_png(original), out / f"{stem}-scan.png")
            save_png(image, out / f"{stem}-cam.png")
            parts.append(
                f"<figure><img src='{stem}-scan.png' alt='scan'><img src='{stem}-cam.png' alt='Grad-CAM'>"
                f"<figcaption>{e(str(sid))} (patient {e(str(preds['patient_id'].iloc[i]))}): p = {prob:.3f}"
                "</figcaption></figure>"
            )
    write_text(out / "index.html", "\n".join(parts) + "\n")
    return out / "index.html"
