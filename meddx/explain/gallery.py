"""A gallery over one split: the most confident true positives, false positives and false negatives with their maps."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.atomic import write_text
from meddx.data.readers import read_dataset
from meddx.data.records import SPLITS
from meddx.errors import DataError
from meddx.evaluation.external import read_external
from meddx.evaluation.operating import run_operating_point
from meddx.explain.gradcam import Explainer, grey_png, save_png
from meddx.export.card import model_caveats
from meddx.logs import progress
from meddx.run import PREDICTIONS, Run, read_json

GROUPS = (
    ("true positives", "highest probability among positives called positive"),
    ("false positives", "highest probability among negatives called positive"),
    ("false negatives", "lowest probability among positives called negative"),
)


def pick_cases(
    y: np.ndarray, p: np.ndarray, threshold: float, k: int, called: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Row indices of the k most telling cases in each group (an unknown label in none); `called`: the decision when
    it is not p >= threshold (a multi-class run calls the class it finds most probable)."""
    y = np.asarray(y, np.float64)
    known, called = ~np.isnan(y), p >= threshold if called is None else np.asarray(called, bool)
    pos, neg = known & (np.nan_to_num(y) >= 0.5), known & (np.nan_to_num(y) < 0.5)
    tp, fp, fn = np.flatnonzero(pos & called), np.flatnonzero(neg & called), np.flatnonzero(pos & ~called)
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
    """Write out_dir/index.html (default RUN/explain/gallery-<split>[-<label>]/) with scans and Grad-CAM overlays:
    for `label`, or a run's only label; else one page per label (each class of a multi-class run) and an index."""
    run = run if isinstance(run, Run) else Run(run)
    explainer = Explainer.from_run(run, layer)
    names = run.label_names
    names = [names[explainer.label_index(label)]] if label or len(names) == 1 else names
    suffix = f"-{_slug(names[0])}" if len(names) == 1 else ""
    out = Path(out_dir) if out_dir else run.path / "explain" / f"gallery-{split}{suffix}"
    preds = run.predictions(split)
    thresholds, rule = run_operating_point(run)  # multi-class: argmax
    probs = preds[[f"p_{n}" for n in run.label_names]].to_numpy()
    chosen = {}
    for n in names:
        called = probs.argmax(1) == run.label_names.index(n) if rule == "argmax" else None
        chosen[n] = pick_cases(preds[n].to_numpy(), preds[f"p_{n}"].to_numpy(), thresholds.get(n, 0.5), k, called)
    records = _cases(run, split, preds, chosen)
    pages = {n: out if len(names) == 1 else out / folder for n, folder in zip(names, _folders(names))}
    for n in progress(names, f"Grad-CAM galleries of {len(names)} labels", least=4):
        point = (thresholds.get(n, 0.5), rule)
        _page(run, explainer, split, n, point, chosen[n], preds, records, pages[n])
    if len(names) == 1:
        return out / "index.html"
    e = html.escape
    links = "".join(f"<li><a href='{pages[n].name}/index.html'>{e(n)}</a></li>" for n in names)
    write_text(out / "index.html", f"<!doctype html><meta charset='utf-8'><title>Grad-CAM galleries: "
               f"{e(run.path.name)}</title><h1>Grad-CAM galleries: {e(run.path.name)}, split {e(split)}</h1>"
               f"<p>One page per label:</p><ul>{links}</ul>\n")  # fmt: skip
    return out / "index.html"


def _slug(name: str) -> str:
    """A label name as a folder name: letters, digits, '-' and '_' kept, anything else '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "label"


def _folders(names: list[str]) -> list[str]:
    """Each label's folder, told apart when two names make one slug ('a+b' and 'a&b': a_b, a_b-2)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        slug = _slug(n)
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out


def _cases(run: Run, split: str, preds: pd.DataFrame, chosen: dict) -> dict:
    """The records of every case any page shows, read once; a scan no longer where it was read is one line."""
    wanted = {preds["id"].iloc[i] for cases in chosen.values() for rows in cases.values() for i in rows}
    records = {r.id: r for r in _split_records(run, split) if r.id in wanted}
    if missing := sorted(wanted - set(records)):
        raise DataError(f"{run.path}: {len(missing)} scan(s) of split '{split}' are no longer where it was read "
                        f"(e.g. {', '.join(missing[:3])}): moved, renamed or read with other options")  # fmt: skip
    return records


def _page(
    run: Run,
    explainer: Explainer,
    split: str,
    name: str,
    point: tuple,
    chosen: dict,
    preds: pd.DataFrame,
    records: dict,
    out: Path,
) -> Path:
    """One label's page: its cases in each group, the scan and its map side by side."""
    out.mkdir(parents=True, exist_ok=True)
    (t, rule), e = point, html.escape
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
    parts += [f"<p style='color:#b00'><b>Caveat:</b> {e(c)}</p>" for c in model_caveats(run.path)]  # e.g. collapsed
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
