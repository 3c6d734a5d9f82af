"""The report's Plan section: every planned choice with who made it and why, planned against actual minutes, and
the choices made on validation with their intervals."""

from __future__ import annotations

import json

from meddx.run import Run


def plan_section(run: Run) -> dict | None:
    """The plan's choices (field, value, who decided, why) and its planned against actual training minutes."""
    plan = run.plan
    if not plan:
        return None
    est, act = plan.get("estimate", {}), plan.get("actual", {})
    minutes = f"budget {plan['budget_minutes']:g} min on the {plan['accelerator'].upper()}"
    if est:
        until_trained = (est["elapsed_before_training_s"] + est["training_s"]) / 60
        minutes += f"; planned {until_trained:.1f} min to trained models, {est['total_s'] / 60:.1f} with the report"
    if act:
        minutes += (
            f"; reading, planning and training took {act['until_trained_s'] / 60:.1f} min (early stopping "
            "may end a model sooner)"
        )
    rows = [[c["field"], json.dumps(c["value"]), c["source"], c["reason"]] for c in plan["choices"]]
    user = [c["field"] for c in plan["choices"] if c["source"] == "user"]
    sel = plan.get("selection") or {}
    header, sel_rows = selection_table(sel)
    alts = ", ".join(a["name"] for a in plan.get("alternatives", []))
    return {
        "minutes": minutes,
        "header": ["field", "value", "decided by", "why"],
        "rows": rows,
        "user": ", ".join(user) if user else "none",
        "selection": {"text": _selection_text(sel, alts), "header": header, "rows": sel_rows} if alts else None,
        "tta": _tta_section(plan.get("tta") or {}),
    }


def _tta_section(tta: dict) -> dict | None:
    """Test-time augmentation (the model alone against its average over shifted copies), judged on val."""
    if not tta:
        return None
    header, rows = selection_table(tta)
    text = (
        f"Test-time augmentation, judged on val after training ({tta.get('resamples', 0)} patient-level bootstrap "
        f"resamples): {tta['chosen']}, {tta['reason']}."
    )
    return {"text": text, "header": header, "rows": rows}


def selection_table(selection: dict) -> tuple[list[str], list[list[str]]]:
    """The verdict as a table for the report: candidate, val AUC and interval, difference from the best, cost."""
    passes = any("passes_per_image" in r for r in selection.get("rows", []))
    cost, unit = ("passes_per_image", "forward passes per image") if passes else ("seconds_per_epoch", "s per epoch")
    header = ["candidate", "val AUC (95% CI)", "difference from the best (paired 95% CI)", unit, "chosen"]
    rows = [
        [r["candidate"], f"{r['val_auc']:.4f} ({r['ci'][0]:.4f}-{r['ci'][1]:.4f})",
         f"{r['diff_from_best']:+.4f} ({r['diff_ci'][0]:+.4f} to {r['diff_ci'][1]:+.4f})",
         f"{r[cost]:g}", "yes" if r["candidate"] == selection["chosen"] else ""]
        for r in selection.get("rows", [])
    ]  # fmt: skip
    return header, rows


def _selection_text(sel: dict, alts: str) -> str:
    if not sel.get("rows"):
        return f"Alternatives to the rules' choice ({alts}) were not tried: {sel.get('reason', 'not recorded')}."
    skipped = f" Not tried for lack of time: {'; '.join(sel['skipped'])}." if sel.get("skipped") else ""
    return (
        f"Chosen on validation only ({sel['repeats']} seeds per candidate, {sel['epochs']} epochs each, "
        f"{sel['resamples']} patient-level bootstrap resamples): {sel['chosen']}, {sel['reason']}.{skipped}"
    )
