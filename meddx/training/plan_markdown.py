"""plan.md: the plan in words, for a person to read before training."""

from __future__ import annotations

import json

from meddx.training.plan import Plan, spect_like


def plan_markdown(plan: Plan) -> str:
    """plan.md: what the fingerprint says and every choice with its reason."""
    fp, est = plan.fingerprint, plan.estimate
    lines = [
        f"# Plan for `{fp['origin']}`",
        "",
        f"- {fp['samples']} samples ({', '.join(f'{s} {n}' for s, n in fp['splits'].items())}), "
        f"{fp['patients']} patients{' (guessed, see the data notes)' if fp.get('patients_guessed') else ''}, task "
        f"{fp['task']}, labels {', '.join(fp['label_names'])}",
        f"- positive shares ({fp.get('statistics_of', 'all samples')}): "
        f"{', '.join(f'{n} {v:.2f}' for n, v in fp['positive_share'].items())}",
    ]
    if fp.get("images_per_patient") and fp.get("patients_known", True):
        per = fp["images_per_patient"]
        lines.append(
            f"- images per patient: median {per['median']:g}, 90th percentile {per['p90']:g}, most {per['max']:g}"
        )
    if "images" in fp:
        lines.append(_images_line(fp["images"]))
    if "tokens" in fp:
        tok = fp["tokens"]
        lines.append(f"- tokens per sample: median {tok['median']:.0f} ({_spread(tok)}), longest {tok['max']:.0f}")
    lines.append(
        f"- budget {plan.budget_minutes:g} min on the {plan.accelerator.upper()}"
        + (f"; planned {est['total_s'] / 60:.1f} min" if est else "")
        + (f"; pilot {plan.pilot['seconds_per_epoch']:.1f} s per epoch" if plan.pilot.get("seconds_per_epoch") else "")
    )
    lines += [f"- data: {note}" for note in fp.get("notes", [])]
    lines += ["", "| field | value | decided by | why |", "|---|---|---|---|"]
    lines += [f"| {c.field} | {json.dumps(c.value)} | {c.source} | {c.reason} |" for c in plan.choices]
    if plan.alternatives:
        lines += ["", "Tried on val against the choices above when the budget allows (`meddx train` says which ran):"]
        lines += [f"- {a['name']}: {a['reason']}" for a in plan.alternatives]
    return "\n".join(lines) + "\n"


def _spread(d: dict) -> str:
    return f"10th-90th percentile {d['p10']:.0f}-{d['p90']:.0f}"


def _modality(im: dict) -> str:
    """The DICOM tag's modality, else whether the intensities look like SPECT/PET counts (the normalisation rule's)."""
    if im["modality"]:
        return im["modality"]
    return "unknown (no DICOM tag; SPECT/PET-like counts by its intensities)" if spect_like(im)[0] else "unknown"


def _images_line(im: dict) -> str:
    """Sizes with their spread, layout, depth, bits, modality, colour and intensities of the sampled images."""
    depth = f", {im['depth']['median']:.0f} slices or channels" if im["depth"]["median"] > 1 else ""
    mean = im.get("mean_intensity", {}).get("median")
    return (
        f"- images ({im['sampled']} sampled): median {im['height']['median']:.0f} px high ({_spread(im['height'])}) x "
        f"{im['width']['median']:.0f} wide ({_spread(im['width'])}){depth}, layout {im['layout']}, "
        f"{im['bits'] or '?'} bits, modality {_modality(im)}, colour share {im['colour_share']:.2f}, "
        f"median brightest pixel {im['max_intensity']['median']:.2f}"
        + (f", median mean intensity {mean:.2f}" if mean is not None else "")
    )
