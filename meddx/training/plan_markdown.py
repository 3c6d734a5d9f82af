"""plan.md: the plan in words, for a person to read before training."""

from __future__ import annotations

import json

from meddx.training.plan import Plan


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
    if "images" in fp:
        im = fp["images"]
        lines.append(
            f"- images: median {im['height']['median']:.0f} px high x {im['width']['median']:.0f} wide, layout "
            f"{im['layout']}, {im['bits'] or '?'} bits, modality {im['modality'] or 'unknown'}, colour share "
            f"{im['colour_share']:.2f}, median brightest pixel {im['max_intensity']['median']:.2f}"
        )
    lines.append(
        f"- budget {plan.budget_minutes:g} min on the {plan.accelerator.upper()}"
        + (f"; planned {est['total_s'] / 60:.1f} min" if est else "")
        + (f"; pilot {plan.pilot['seconds_per_epoch']:.1f} s per epoch" if plan.pilot.get("seconds_per_epoch") else "")
    )
    lines += [f"- data: {note}" for note in fp.get("notes", [])]
    lines += ["", "| field | value | decided by | why |", "|---|---|---|---|"]
    lines += [f"| {c.field} | {json.dumps(c.value)} | {c.source} | {c.reason} |" for c in plan.choices]
    return "\n".join(lines) + "\n"
