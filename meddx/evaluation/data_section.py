"""The report's Data section: where the evaluated samples came from, their sizes, and the leakage line (the run's
own gate for its splits; for new data, its check against the run's train and val images)."""

from __future__ import annotations

import json

from meddx.data.records import SPLITS
from meddx.run import PREDICTIONS, Run, read_json


def leakage_text(run: Run, split: str, info: dict) -> str:
    """The leakage line: the training-time gate for the run's own splits; for new data, its check against the run's
    train and val images (predictions/<split>.leakage.json)."""
    sequence = getattr(run, "is_sequence", False)  # the own-split line needs no run (None)
    item = "report" if sequence else "image"  # what one sample is, in the line's words
    if split in ("train", "val", "test"):
        rule, known = info["leakage"].get("near_duplicate_rule"), info["leakage"].get("patients_known", True)
        checked = ("patients, " if known else "") + f"sample ids, identical files by SHA-1, near duplicates: {rule}"
        unknown = "" if known else f"; patients NOT checked: no patient ids, each {item} counted as its own patient"
        return ("passed" if info["leakage"]["ok"] else "FOUND LEAKAGE") + (f" ({checked})" if rule else "") + unknown
    path = run.path / PREDICTIONS / f"{split}.leakage.json"
    check = json.loads(path.read_text()) if path.is_file() else {"checked": False}
    if not check["checked"]:
        return f"this data was not checked against the training {item}s (the run's split.csv holds no hashes)"
    rule = check.get("near_duplicate_rule")
    text = (
        f"{check['files']} {'reports' if sequence else 'files'} of this data checked against the run's train "
        f"and val {item}s (SHA-1"
        + (f"; near duplicates: {rule}" if rule else "")
        + "): "
        + (f"{check['dropped']} identical or near-identical ones left out" if check["dropped"] else "none left out")
    )
    if check.get("resampled_volumes"):
        text += f"; {check['resampled_volumes']} volume(s) look like its train/val volumes at another depth or size"
        text += " (kept: likely copies, so these figures are optimistic)"
    if check.get("cropped_unchecked"):
        text += f"; copies cut from training images not looked for ({check['cropped_unchecked']})"
    elif check.get("cropped_unreadable"):
        text += f"; {check['cropped_unreadable']} training image(s) not readable here, not compared for cut copies"
    if check.get("cropped_images"):
        text += f"; {check['cropped_images']} image(s) look like its train/val images cropped and resized"
        text += " (kept: likely copies, so these figures are optimistic)"
    if not check.get("run_patients_known", True) and not check["shared_patient_ids"]:
        text += f"; patients NOT checked (the run's training data had no patient ids: each {item} its own)"
    elif not check.get("patients_known", True):
        text += f"; patients NOT checked (this data has no patient ids: each {item} counted as its own patient)"
    if check.get("repeated_files"):
        other = check.get("repeated_other_label", 0)
        text += f"; {check['repeated_files']} {item}(s) repeat another of this data exactly (all scored)"
        text += f", {other} of them under another label" if other else ""
    if check["shared_patient_ids"]:
        text += f"; {check['shared_patient_ids']} patient id(s) also in training (ids may coincide across sources)"
    if check.get("same_as_test"):
        distinct = check.get("same_as_test_distinct", check["same_as_test"])
        copies = f" ({distinct} distinct: some are copies of one another)" if distinct != check["same_as_test"] else ""
        text += f"; {check['same_as_test']} are the run's own test {item}s, identical or re-saved{copies}"
        tested = info.get("sizes", {}).get("test", {}).get("samples")  # the run's own test split, when known
        part = f"{distinct} of its {tested} test {item}s" if tested else "part of its test"
        text += f" (these figures repeat {'all of its test split' if distinct == tested else part})"
    if check.get("resampled_test"):
        text += f"; {check['resampled_test']} volume(s) look like the run's own test volumes at another depth or size"
    if check.get("cropped_test"):
        text += f"; {check['cropped_test']} image(s) look like the run's own test images cropped and resized"
    return text


def data_section(run: Run, result: dict, info: dict) -> dict:
    """Where the evaluated samples came from. New data (`evaluate --data`): its own source and reading notes, then
    the run's training source and its notes; the sizes: the run's train and val beside the evaluated data."""
    split, notes, about = result["split"], list(info.get("notes", [])), list(info.get("model_notes", []))
    origin, sizes = info["origin"], dict(info["sizes"])
    source = read_json(run.path / PREDICTIONS / f"{split}.data.json")
    if split not in SPLITS:
        sizes = {s: v for s, v in sizes.items() if s != "test"}
        sizes[split] = {"samples": result["n_samples"], "patients": result["n_patients"]}
        notes = [
            *source.get("notes", []),
            f"the model was trained on `{origin}`",
            *about,
            *(f"training data: {n}" for n in notes),
        ]
        origin = source.get("origin", f"{split} (its source was not recorded)")
    else:
        notes = [*about, *notes]
    return {
        "origin": origin,
        "task": info["task"],
        "labels": result["labels"],
        "leakage": leakage_text(run, split, info),
        "notes": notes,
        "sizes": sizes,
        "size_rows": [[s, v["samples"], v["patients"]] for s, v in sizes.items()],
    }
