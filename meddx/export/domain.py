"""The input-domain check: statistics of the training scans, and how far one new scan is from them.

Stored as `input_stats.json` in a model package. A scan from another modality, an inverted or unscaled image, or a
colour photo is reported with a reason instead of getting a confident number silently.
"""

from __future__ import annotations

import numpy as np

BINS = 32
STATS_VERSION = 2  # 2: the fine-detail figure


def _histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of pixels per bin, with one bin below and one above the training range."""
    counts = np.bincount(np.searchsorted(edges, x.ravel(), side="right"), minlength=len(edges) + 1)[: len(edges) + 1]
    return counts / max(counts.sum(), 1)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between two histograms (0: same, 1: disjoint)."""
    return float(0.5 * np.abs(a - b).sum())


def _unit(x: np.ndarray) -> np.ndarray:
    """Grey levels at model size scaled to zero mean and unit length, for correlating with the mean training scan."""
    g = x.mean(0) if x.ndim == 3 else x
    g = g - g.mean()
    return (g / (np.linalg.norm(g) + 1e-12)).ravel()


def detail(resized: np.ndarray) -> float:
    """Fine detail at model size: the mean absolute Laplacian of the grey levels over their spread (scale-free). An
    image enlarged from a smaller one, or blurred, holds less of it than sharp scans of the same kind."""
    g = resized.mean(0) if resized.ndim == 3 else resized
    g = g.astype(np.float64)
    if min(g.shape) < 3 or g.std() < 1e-9:  # a blank scan has no detail to judge (other checks flag it)
        return float("nan")
    laplacian = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(np.abs(laplacian).mean() / (g.std() + 1e-6))


DETAIL_MARGIN = 0.6  # flagged below this share of the training scans' 1st percentile (bench/domain_check.py)


def _detail_limits(resized: list[np.ndarray]) -> dict:
    """The training scans' detail: its spread, 1st percentile (one blank or blurred scan moves no limit) and limit."""
    values = np.array([detail(r) for r in resized])
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    floor = float(np.quantile(values, 0.01))
    return {"detail": {**_robust(values), "p01": floor, "limit": DETAIL_MARGIN * floor}}


def _limits(distances: np.ndarray) -> dict:
    q50, q99 = (float(v) for v in np.quantile(distances, [0.5, 0.99]))
    return {
        "median": q50,
        "p99": q99,
        "max": float(distances.max()),
        "limit": max(q99 + 0.5 * (q99 - q50), float(distances.max()), 0.05),
    }


def _robust(values: np.ndarray) -> dict:
    med = float(np.median(values))
    return {
        "median": med,
        "mad": float(np.median(np.abs(values - med))) * 1.4826,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def standardise(image: np.ndarray) -> np.ndarray:
    """A scan at zero mean and unit spread, as a model normalised per sample sees it."""
    return (image - image.mean()) / (image.std() + 1e-6)


def input_stats(
    images: list[np.ndarray], resized: list[np.ndarray], colour: list[bool] | None = None, per_sample: bool = False
) -> dict:
    """Statistics of decoded training scans (C, H, W): at their own size (intensities, shape) and at model size
    (layout); `per_sample` (a model normalised per sample): intensities compared after standardising each scan."""
    if not images:
        raise ValueError("input_stats needs at least one image")
    if per_sample:
        images = [standardise(im) for im in images]
    sample = np.concatenate([im.ravel()[:: max(1, im.size // 20000)] for im in images])
    low, high = (float(v) for v in np.quantile(sample, [0.001, 0.999]))
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, BINS + 1)
    hists = np.stack([_histogram(im, edges) for im in images])
    reference = hists.mean(0)
    units = np.stack([_unit(r) for r in resized])
    mean_image = units.mean(0)
    mean_image /= np.linalg.norm(mean_image) + 1e-12
    correlation = units @ mean_image
    aspects = np.array([im.shape[2] / im.shape[1] for im in images])
    return {
        "version": STATS_VERSION,
        "per_sample": per_sample,
        "images": len(images),
        "channels": int(images[0].shape[0]),
        "colour_share": float(np.mean(colour)) if colour else 0.0,
        "height": _robust(np.array([im.shape[1] for im in images], float)),
        "width": _robust(np.array([im.shape[2] for im in images], float)),
        "aspect": _robust(aspects),
        "mean": _robust(np.array([im.mean() for im in images])),
        "std": _robust(np.array([im.std() for im in images])),
        "value_range": [low, high],
        "edges": edges.tolist(),
        "histogram": reference.tolist(),
        "distance": _limits(np.array([_distance(h, reference) for h in hists])),
        "mean_image": mean_image.round(6).tolist(),
        "mean_image_shape": list(resized[0].shape[1:]),
        "correlation": {
            "median": float(np.median(correlation)),
            "min": float(correlation.min()),
            "limit": float(min(np.quantile(correlation, 0.005), correlation.min()) - 0.05),
        },
        **_detail_limits(resized),
    }


NOT_RADIOGRAPHS = {  # DICOM modalities that are not projection X-rays (CR, DX, XR pass when nothing is known)
    "CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound", "NM": "nuclear medicine", "PT": "PET",
    "OCT": "optical coherence tomography",
}  # fmt: skip
DEPTH_SPREAD = 1.25  # a stack this much shallower or deeper than every training stack is another kind of volume


def _source_warnings(stats: dict, modality: str | None, depth: int | None) -> list[str]:
    """What the scan's source says before its pixels: a DICOM modality or a stack depth unlike the training scans'."""
    warnings = []
    if modality and stats.get("modalities") and modality not in stats["modalities"]:
        warnings.append(f"a DICOM {modality} scan: the model was trained on {', '.join(stats['modalities'])} scans")
    elif _unlike_pictures(stats, modality):
        warnings.append(
            f"a DICOM {modality} scan ({NOT_RADIOGRAPHS[modality]}), and the training scans carry no modality (not "
            f"DICOM): unless the model was trained on {modality} images, its output means nothing for this scan"
        )
    return warnings + _depth_warnings(stats, depth)


def _unlike_pictures(stats: dict, modality: str | None) -> bool:
    """A DICOM modality other than projection X-ray, for a model trained on picture files (PNG, JPEG: no modality
    recorded; not .npz arrays, whose kind is unknown, nor packages older than the record); NM and PET pass for
    SPECT-like training scans (normalised per image), which are of their kind."""
    pictures = stats.get("picture_files") and stats.get("modalities") == []
    spect_like = modality in ("NM", "PT") and stats.get("per_sample")
    return bool(modality in NOT_RADIOGRAPHS and pictures and not spect_like)


def _depth_warnings(stats: dict, depth: int | None) -> list[str]:
    if depth and (span := stats.get("depth_range")) and not span[0] / DEPTH_SPREAD <= depth <= span[1] * DEPTH_SPREAD:
        trained = f"{span[0]}" if span[0] == span[1] else f"{span[0]}-{span[1]}"
        return [f"stack depth unlike training stacks ({depth} slices; trained on {trained}): other volume?"]
    return []


def _shape_warnings(image: np.ndarray, resized: np.ndarray, stats: dict) -> list[str]:
    """An aspect ratio, or a resolution under half the training scans', unlike what the model learnt from."""
    warnings = []
    aspect, usual = image.shape[2] / image.shape[1], stats["aspect"]["median"]
    if abs(np.log(aspect / usual)) > np.log(1.5):
        warnings.append(f"aspect ratio {aspect:.2f} (width/height) differs from the training scans' {usual:.2f}")
    elif (
        abs(np.log(usual)) > np.log(1.1)
        and abs(np.log(aspect * usual)) < np.log(1.05)  # width and height swapped ...
        and not stats["aspect"]["min"] / 1.05 <= aspect <= stats["aspect"]["max"] * 1.05  # ... and no training scan so
    ):
        warnings.append(
            f"a {image.shape[1]}x{image.shape[2]} scan where training scans are {stats['height']['median']:.0f}x"
            f"{stats['width']['median']:.0f} (height x width): turned by 90 degrees, most likely"
        )
    side, smallest = min(image.shape[1:]), min(stats["height"]["min"], stats["width"]["min"])
    if side < min(resized.shape[1:]) and side < min(smallest, *resized.shape[1:]) / 2:  # under half what it saw
        warnings.append(
            f"a {image.shape[1]}x{image.shape[2]} px scan, upsampled to the model's {resized.shape[1]} px: training "
            f"scans were at least {smallest:.0f} px (a lower resolution than the model learnt from)"
        )
    elif (trained := stats.get("detail", {})).get("p01") and (found := detail(resized)) < trained["limit"]:
        warnings.append(
            f"less fine detail than the training scans ({found:.3f} at the model's {resized.shape[-2]} px; 99% of "
            f"training scans {trained['p01']:.3f} or more): enlarged from a smaller image, or blurred?"
        )
    return warnings


def check_input(
    image: np.ndarray,
    resized: np.ndarray,
    stats: dict,
    colour: bool = False,
    modality: str | None = None,
    depth: int | None = None,
) -> dict:
    """Compare one decoded scan (C, H, W), and the same at model size, with the training statistics; `modality`: a
    DICOM scan's Modality tag, checked against the training scans' when they were DICOM; `depth`: a stack's slices
    along the view axis, checked against the training stacks'."""
    warnings = _source_warnings(stats, modality, depth)
    if stats.get("per_sample"):  # its intensity scale cannot matter to the model; its histogram's shape can
        image = standardise(image)
    edges, reference = np.asarray(stats["edges"]), np.asarray(stats["histogram"])
    low, high = stats["value_range"]
    span = high - low
    lo, hi = float(image.min()), float(image.max())
    if colour and stats.get("colour_share", 0.0) < 0.05:
        warnings.append("colour image: the model was trained on grey-level scans")
    if hi > high + 2 * span or lo < low - 2 * span:
        warnings.append(
            f"intensities run from {lo:.4g} to {hi:.4g} but training scans lay within {low:.3g} to {high:.3g}: "
            "the image looks unscaled (raw units or another bit depth)"
        )
    distance = _distance(_histogram(image, edges), reference)
    limit = stats["distance"]["limit"]
    correlation = float(_unit(resized) @ np.asarray(stats["mean_image"]))
    floor = stats["correlation"]["limit"]
    if correlation < floor and -correlation >= floor:
        warnings.append(
            f"the image looks inverted (bright and dark swapped): it anti-correlates ({correlation:.2f}) with "
            "the average training scan"
        )
    elif correlation < floor:
        warnings.append(
            f"the layout is unlike the training scans (correlation {correlation:.2f} with the average training "
            f"scan; training scans reach {stats['correlation']['min']:.2f}, flagged below {floor:.2f}): another body "
            "part or view?"
        )
    if distance > limit:
        warnings.append(
            f"intensity distribution unlike the training scans (distance {distance:.2f}; training scans reach "
            f"{stats['distance']['max']:.2f}): another modality or preprocessing?"
        )
    warnings += _shape_warnings(image, resized, stats)
    return {
        "in_distribution": not warnings,
        "distance": round(distance, 4),
        "distance_limit": round(limit, 4),
        "correlation": round(correlation, 4),
        "correlation_limit": round(floor, 4),
        "warnings": warnings,
    }
