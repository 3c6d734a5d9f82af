"""Kermany runs scored on other children: `meddx evaluate RUN --data FOLDER`, the path cases kept outside the project
are scored by, on Kermany's official test split (withheld from the shared folder) as PneumoniaMNIST holds it: the
same 624 X-rays, centre-cropped to 28 px by MedMNIST v2. The peer: a run trained on PneumoniaMNIST's own 28 px
train split, scored on the same 624 images (its own test split). A proxy, and a harsh one: these scans are 28 px
(upsampled to the run's size) and centre-cropped, where the Kermany folder's are 224 px and squashed.

    .venv/bin/python bench/external.py --runs /tmp/plan-bench/kermany-plan,/tmp/plan-bench/kermany-hand \
        --peer /tmp/plan-bench/pneumoniamnist-plan
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import meddx

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

NPZ = Path(meddx.__file__).parent / "datasets" / "pneumoniamnist.npz"
CLASSES = ("NORMAL", "PNEUMONIA")  # Kermany's folder names: PneumoniaMNIST's 0 and 1


def write_test_folder(out: Path) -> Path:
    """PneumoniaMNIST's test split as class folders of PNGs named as Kermany's classes."""
    data = np.load(NPZ)
    for i, (image, label) in enumerate(zip(data["test_images"], data["test_labels"].ravel())):
        folder = out / CLASSES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"test_{i:04d}.png")
    return out


def _figures(metrics: dict) -> dict:
    """AUC with its interval, and sensitivity and specificity at the run's operating point (chosen on its val)."""
    label = metrics["labels"][0]
    m = metrics["model"]["per_label"][label]
    return {
        k: (m[k]["value"], m[k].get("ci_low"), m[k].get("ci_high")) for k in ("roc_auc", "sensitivity", "specificity")
    }


def score(run: Path, folder: Path, work: Path) -> dict:
    """The run's own test figures, and its figures on the folder (evaluated on a copy: the run is left as it was)."""
    copy = work / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tb"))
    started = time.perf_counter()
    result = meddx.evaluate(str(copy), data={"path": str(folder)})
    loaded = meddx.load_run(copy)
    plan = loaded.plan or {}
    choices = {c["field"]: c["value"] for c in plan.get("choices", [])}
    recipe = f"{choices.get('model.name', loaded.config.model.name)} {loaded.preprocess.image_size[0]} px"
    return {
        "run": run.name,
        "recipe": recipe + (f", {choices['train.ensemble']} model(s)" if "train.ensemble" in choices else ""),
        "internal": _figures(loaded.metrics("test")),
        "external": _figures(loaded.metrics(result["name"])),
        "seconds": time.perf_counter() - started,
    }


def _ci(v: tuple) -> str:
    return f"{v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})" if v[1] is not None else f"{v[0]:.3f}"


def table(rows: list[dict], peer: dict, args) -> str:
    peer_auc = peer["internal"]["roc_auc"][0]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, 2 CPU cores, by `.venv/bin/python "
        f"bench/external.py --runs {args.runs} --peer {args.peer}`: each Kermany run (`bench/plan.py`'s) scored by "
        "`meddx evaluate RUN --data FOLDER` on Kermany's official test children, 624 X-rays as PneumoniaMNIST holds "
        "them (centre-cropped, 28 px); the peer is a run trained on PneumoniaMNIST's 28 px train split, scored on "
        "the same 624 images. 95% bootstrap intervals; sensitivity and specificity at each run's operating point "
        "chosen on its own val. Ratio: this row's 1 - AUC over the peer's (above 1: worse than the peer).",
        "",
        "| run | recipe | own test AUC (Kermany folder) | AUC on the other children | vs peer | sensitivity | "
        "specificity | evaluate s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in [*rows, {**peer, "external": peer["internal"], "peer": True}]:
        e = r["external"]
        ratio = (1 - e["roc_auc"][0]) / (1 - peer_auc)
        own = "-" if r.get("peer") else _ci(r["internal"]["roc_auc"])
        name = f"peer: {r['run']}" if r.get("peer") else r["run"]
        lines.append(
            f"| {name} | {r['recipe']} | {own} | {_ci(e['roc_auc'])} | {ratio:.2f} | {_ci(e['sensitivity'])} | "
            f"{_ci(e['specificity'])} | {r.get('seconds', 0):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="Comma-separated Kermany run folders (bench/plan.py's).")
    ap.add_argument("--peer", required=True, help="A run trained on PneumoniaMNIST (its test split: the same images).")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_test_folder(Path(tmp) / "kermany-test-28px")
        rows = [score(Path(r), folder, Path(tmp)) for r in args.runs.split(",")]
        peer = score(Path(args.peer), folder, Path(tmp))  # its external figures: the same images as its test split
    body = table(rows, peer, args)
    print(body)
    print(json.dumps({"peer_external_auc": peer["external"]["roc_auc"][0]}))  # equals its own test AUC, same images
    if not args.no_docs:
        write_section("external", "Kermany runs on other children: the scored path, `evaluate --data`", body)


if __name__ == "__main__":
    main()
