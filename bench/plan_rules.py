"""Each rule of the plan against its alternative, on every shared image set: the rules' recipe (what `meddx plan`
chooses before any data-driven choice, at the plan's full epochs for one model) and, one at a time, the other
normalisation, the other class weighting, no augmentation, the plan's own alternatives (a wider or deeper model, a
larger input), a third and three times the learning rate, twice the epochs, mixup, (small images with no larger
alternative) the input upsampled to twice its side, half the epochs (two such models cost about one of the
rules'), a quarter of the batch, the augmentation twice and half as strong, and an EMA of the weights. Every variant trains --seeds seeds on the same split; the verdict is the paired patient-bootstrap 95% interval
of the AUC difference between the seeds' mean predictions **on val** (what a rule may be chosen on); test figures are
reported beside it, never used.

    .venv/bin/python bench/plan_rules.py [--sets pneumoniamnist,breastmnist] [--seeds 2] [--curve 10] [--out DIR]

--curve K trains K seeds of the rules' recipe and tabulates the mean of the first k models against the plan's cap.
--report-only trains nothing: the tables hold the finished runs, and name the variants still to train.

Finished runs are reused, so a rerun resumes; those of public sets are also recorded under bench/results/ (commit
them), so the benchmark resumes on another machine.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import meddx
from meddx.config import RunConfig
from meddx.config.files import apply_overrides
from meddx.evaluation.evaluation import bootstrap_weights
from meddx.evaluation.metrics import ranking_metrics
from meddx.run import WEIGHTS, Run
from meddx.training.plan import CPU_MAX_SIZE, target_epochs

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402
from _records import RECORDS, Record, dotted, load_record, record_path, save_record  # noqa: E402
from plan import SETS  # noqa: E402

RULES = "the rules' recipe"
HALF = "half the epochs"  # two of its seeds cost about one model of the rules' recipe: two models or one, same time
CAP = RunConfig().plan.max_ensemble  # the most models the plan averages today
RESAMPLES = 2000
LABELS: dict[str, list[str]] = {}  # set -> its label names as read today (from its plan)


def rule_recipe(name: str, data: dict, out: Path) -> tuple[dict, list[dict], int]:
    """The plan's rule choices (dotted field -> value), its alternatives and the epochs it wants for one model."""
    folder = meddx.plan({"data": data, "plan": {"pilot": False}}, output=out / name / "plan")
    plan = json.loads((folder / "plan.json").read_text())
    LABELS[name] = plan["fingerprint"]["label_names"]  # how the set reads today: older records must match
    choices = {c["field"]: c["value"] for c in plan["choices"] if c["source"] != "budget"}
    n_train = plan["fingerprint"]["splits"]["train"]
    epochs = target_epochs(math.ceil(n_train / choices["train.batch_size"]))
    return choices, plan.get("alternatives") or [], epochs


def variants(choices: dict, alternatives: list[dict], epochs: int) -> dict[str, dict]:
    """Variant name -> the fields it changes from the rules' recipe (each one rule flipped, or one candidate rule)."""
    flip = {"sample": "dataset", "dataset": "sample", "none": "dataset"}
    norm = flip[choices.get("data.normalize", "dataset")]
    weights = "off" if choices.get("train.class_weights") == "on" else "on"
    lr = float(choices["train.lr"])
    out = {
        RULES: {},
        f"normalise: {norm}": {"data.normalize": norm},
        f"class weights {weights}": {"train.class_weights": weights},
        "no augmentation": {"train.augment.enabled": False},
        **{alt["name"]: alt["set"] for alt in alternatives},
        f"lr {lr / 3:.2g} (a third)": {"train.lr": lr / 3},
        f"lr {lr * 3:.2g} (three times)": {"train.lr": lr * 3},
        f"{2 * epochs} epochs (twice)": {"train.max_epochs": 2 * epochs, "train.patience": _patience(2 * epochs)},
        "mixup 0.2": {"train.mixup": 0.2},
    }  # new variants go last: a variant's runs are named by its place (v0, v1, ...), so earlier runs stay reusable
    size = int(choices["data.image_size"])
    if size < CPU_MAX_SIZE and not any("data.image_size" in alt["set"] for alt in alternatives):
        out[f"{2 * size} px (upsampled)"] = {"data.image_size": 2 * size}
    out[HALF] = {"train.max_epochs": max(epochs // 2, 3), "train.patience": _patience(max(epochs // 2, 3))}
    batch = int(choices["train.batch_size"])
    if batch >= 32:  # four times the steps per epoch: what a smaller batch buys when the budget caps the epochs
        out[f"batch {batch // 4} (a quarter)"] = {"train.batch_size": batch // 4}
    for factor, words in ((2.0, "twice as strong"), (0.5, "half as strong")):  # the fixed strength the plan keeps
        out[f"augmentation {words}"] = _augment_scaled(factor)
    out["EMA of weights (decay 0.995)"] = {"train.tricks.ema_decay": 0.995}  # about 200 steps of ~2000: saved, judged
    return out


def _augment_scaled(factor: float) -> dict:
    """The default augmentation with every strength (rotation, shift, zoom, brightness, contrast) times `factor`."""
    a = RunConfig().train.augment
    keys = ("rotate_degrees", "translate", "scale", "brightness", "contrast")
    return {f"train.augment.{k}": round(getattr(a, k) * factor, 4) for k in keys}


def _patience(epochs: int) -> int:
    return int(np.clip(epochs // 4, 3, 10))


def train_seed(set_name: str, data: dict, fields: dict, slug: str, seed: int, args) -> Run | Record | None:
    """One model of one variant: reused when trained here or recorded in the repository with today's recipe (None
    when neither and --report-only); a newly trained one is recorded."""
    folder = args.out / set_name / f"{slug}-seed{seed}"
    kept = record_path("plan-rules", set_name, folder.name, args.records)
    if (folder / WEIGHTS).is_file() and (folder / "predictions" / "test.csv").is_file():
        run = Run(folder)
        if not (stale := _stale(lambda name: dotted(run.config.model_dump(mode="json"), name), fields)):
            if kept is not None and not kept.is_file():
                save_record(kept, run, fields)
            return run
        print(f"{folder}: trained with {', '.join(stale)}, not today's plan: not reused", flush=True)
    if (record := load_record(kept, LABELS.get(set_name))) is not None and not _stale(record.field, fields):
        return record
    if args.report_only:
        return None
    shutil.rmtree(folder, ignore_errors=True)  # a run stopped part way: trained again from the start
    cfg = {"name": folder.name, "output_dir": str(folder.parent), "data": dict(data), "plan": {"enabled": False},
           "evaluate": {"bootstrap": 0}, "train": {"progress_bar": False, "seed": seed, "ensemble": 1}}  # fmt: skip
    run = meddx.train(apply_overrides(cfg, fields))
    save_record(kept, run, fields)
    return run


def _stale(value_of, fields: dict) -> list[str]:
    """The recipe fields a finished run was trained with other values of (the plan changed since, e.g. because the
    data are split otherwise): such a run is not today's variant. `value_of(dotted name)` reads the run's value."""
    return [
        f"{name}={value_of(name)!r} (now {wanted!r})" for name, wanted in fields.items() if value_of(name) != wanted
    ]


def pooled(runs: list[Run | Record], split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """(truth, the seeds' mean probability, patients, each seed's AUC) of a binary task on one split."""
    frames = [r.predictions(split).sort_values("id").reset_index(drop=True) for r in runs]
    for run, frame in zip(runs[1:], frames[1:]):
        _same_split(runs[0], frames[0], run, frame, split)
    label = runs[0].label_names[-1]
    y = frames[0][label].to_numpy(float)
    probs = np.stack([f[f"p_{label}"].to_numpy(float) for f in frames])
    per_seed = [float(ranking_metrics(y, p)["roc_auc"][0]) for p in probs]
    return y, probs.mean(0), frames[0]["patient_id"].astype(str).to_numpy(), per_seed


def _same_split(a: Run | Record, frame_a, b: Run | Record, frame_b, split: str) -> None:
    """Runs on another split (the data read otherwise) do not pair sample by sample: stop, naming them."""
    if frame_a["id"].astype(str).tolist() != frame_b["id"].astype(str).tolist():
        raise SystemExit(f"{b.path}: its {split} split differs from {a.path}'s; delete the older runs")


def paired(y, p_a, p_b, patients) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) and its paired patient-bootstrap 95% interval."""
    w = np.vstack([np.ones((1, len(y))), bootstrap_weights(patients, RESAMPLES, 0)])
    d = ranking_metrics(y, p_a, w)["roc_auc"] - ranking_metrics(y, p_b, w)["roc_auc"]
    lo, hi = np.nanpercentile(d[1:], [2.5, 97.5])
    return float(d[0]), float(lo), float(hi)


def measure(set_name: str, args) -> list[dict]:
    """Every variant's seeds on one set, each scored against the rules' recipe on val and on test."""
    data = SETS[set_name][0]
    choices, alternatives, epochs = rule_recipe(set_name, data, args.out)
    base = {**choices, "train.max_epochs": epochs, "train.patience": _patience(epochs)}
    runs, missing = {}, []
    for i, (name, fields) in enumerate(variants(choices, alternatives, epochs).items()):
        if args.only and name != RULES and not any(w in name for w in args.only.split(",")):
            continue  # another run of the script measures it
        group = [train_seed(set_name, data, {**base, **fields}, f"v{i}", s, args) for s in range(args.seeds)]
        if all(group):
            runs[name] = group
        else:
            missing.append(name)
    if RULES not in runs:  # the set's line says so
        return [{"set": set_name, "epochs": epochs, "recipe": _recipe(choices), "variant": "missing", "names": missing}]
    rows = []
    rule = {split: pooled(runs[RULES], split)[1] for split in ("val", "test")}  # read once, compared with every variant
    one = {split: pooled(runs[RULES][:1], split)[1] for split in ("val", "test")}
    for name, group in runs.items():
        row = {"variant": name, "minutes": np.mean([r.training.get("seconds", 0) for r in group]) / 60}
        for split in ("val", "test"):
            frames = [r.predictions(split).sort_values("id").reset_index(drop=True) for r in (runs[RULES][0], group[0])]
            _same_split(runs[RULES][0], frames[0], group[0], frames[1], split)  # every variant pairs with the rules'
            y, p, patients, per_seed = pooled(group, split)
            row[split] = {"seeds": per_seed, "diff": paired(y, p, rule[split], patients)}
            if name in (RULES, HALF):  # one model against two: the rules' first seed against these two's mean
                row[split]["one_seed"] = paired(y, one[split], p, patients)
        rows.append(row)
    if args.curve > args.seeds:  # more seeds of the rules' recipe: how many models the average wants
        more = [train_seed(set_name, data, base, "v0", s, args) for s in range(args.seeds, args.curve)]
        if None in more:  # --report-only before every seed finished
            missing.append(f"the curve's {args.curve} seeds")
        else:
            rows.append({"variant": "curve", "curve": _curve(runs[RULES] + more)})
    rows += [{"variant": "missing", "names": missing}] if missing else []
    return [{"set": set_name, "epochs": epochs, "recipe": _recipe(choices), **r} for r in rows]


def _curve(group: list[Run | Record]) -> list[dict]:
    """AUC of the mean of the first k seeds (k = 1, 2, 3, the plan's cap, all), each against the cap's, per split."""
    ks = sorted({k for k in (1, 2, 3, CAP, len(group)) if k <= len(group)})
    points = []
    for k in ks:
        point = {"k": k}
        for split in ("val", "test"):
            y, p, patients, _ = pooled(group[:k], split)
            _, p_cap, _, _ = pooled(group[: min(CAP, len(group))], split)
            point[split] = {"auc": float(ranking_metrics(y, p)["roc_auc"][0]), "diff": paired(y, p, p_cap, patients)}
        points.append(point)
    return points


def _recipe(choices: dict) -> str:
    keys = ("model.name", "data.image_size", "data.normalize", "train.class_weights", "train.batch_size", "train.lr")
    return ", ".join(f"{k.split('.')[-1]} {choices.get(k)}" for k in keys)


def _diff(d) -> str:
    point, lo, hi = d
    mark = " **better**" if lo > 0 else (" **worse**" if hi < 0 else "")
    return f"{point:+.3f} ({lo:+.3f} to {hi:+.3f}){mark}"


HEADER = (
    "Every variant: the given seeds, one model each, the plan's full epochs for one model (early stopping on val loss), "
    "the same split. Difference: the AUC of the seeds' mean prediction minus the rules' recipe's, with its paired "
    f"patient-bootstrap 95% interval ({RESAMPLES} resamples); **better**/**worse** when the interval excludes 0. The "
    "verdict is read on val; test is reported beside it and chooses nothing. Each set's block is written by its own "
    "run of the script (`--sets NAME`), so a set measured again replaces only its block."
)


def set_block(part: list[dict], args) -> str:
    """One set's tables (variants, the seed curve) under the line naming when and how they were measured."""
    set_name, seeds = part[0]["set"], args.seeds
    command = f"bench/plan_rules.py --seeds {seeds} --curve {args.curve} --sets {set_name}"
    command += f" --only {args.only} --section {args.section}" if args.only else ""
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, 2 CPU cores, by `.venv/bin/python "
             f"{command}{' --report-only' if args.report_only else ''}`; {seeds} seeds per variant."]  # fmt: skip
    if all(r["variant"] == "missing" for r in part):
        return "\n".join(lines + ["", f"**{set_name}** (rules: {part[0]['recipe']}): the rules' recipe is not "
                                   "trained with today's plan yet, so no row."])  # fmt: skip
    lines += ["", f"**{set_name}** (rules: {part[0]['recipe']}; {part[0]['epochs']} epochs)", "",
              "| variant | val AUC per seed | val: difference (95% CI) | test AUC per seed | "
              "test: difference (95% CI) | minutes per model |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in [r for r in part if r["variant"] not in ("curve", "missing")]:
        v, t = r["val"], r["test"]
        seeds_v, seeds_t = (", ".join(f"{a:.3f}" for a in x["seeds"]) for x in (v, t))
        lines.append(f"| {r['variant']} | {seeds_v} | {'-' if r['variant'] == RULES else _diff(v['diff'])} | "
                     f"{seeds_t} | {'-' if r['variant'] == RULES else _diff(t['diff'])} | {r['minutes']:.1f} |")  # fmt: skip
        if r["variant"] in (RULES, HALF):
            what = f"the {seeds} seeds' mean" if r["variant"] == RULES else f"{seeds} models at half the epochs"
            lines.append(f"| one model of the rules' recipe (seed 0) instead of {what} | | {_diff(v['one_seed'])} "
                         f"| | {_diff(t['one_seed'])} | |")  # fmt: skip
    lines += _curve_lines([r for r in part if r["variant"] == "curve"])
    lines += [f"\nNot trained yet, so not in this table: {', '.join(r['names'])}." for r in part
              if r["variant"] == "missing"]  # fmt: skip
    return "\n".join(lines)


def by_set(rows: list[dict]) -> dict[str, list[dict]]:
    return {name: [r for r in rows if r["set"] == name] for name in dict.fromkeys(r["set"] for r in rows)}


def _curve_lines(curve: list[dict]) -> list[str]:
    if not curve:
        return []
    lines = ["", f"The rules' recipe, more seeds: the mean of the first k models against the plan's cap ({CAP})", "",
             f"| models averaged | val AUC | val: minus {CAP} models (95% CI) | test AUC | test: minus {CAP} models |",
             "|---|---|---|---|---|"]  # fmt: skip
    for point in curve[0]["curve"]:
        v, t = point["val"], point["test"]
        lines.append(f"| {point['k']} | {v['auc']:.3f} | {_diff(v['diff'])} | {t['auc']:.3f} | {_diff(t['diff'])} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="pneumoniamnist,breastmnist,datscan,nih64,adrenal3d")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/plan-rules"))
    ap.add_argument("--records", type=Path, default=RECORDS, help="Where finished runs of public sets are kept.")
    ap.add_argument("--curve", type=int, default=0, help="Seeds of the rules' recipe for the ensemble-size curve.")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="Train nothing: tabulate the finished runs.")
    ap.add_argument("--only", default="", help="Variants whose names hold one of these words (and the rules').")
    ap.add_argument("--section", default="", help="Write each set's block to plan-rules-SECTION-SET instead.")
    args = ap.parse_args()
    rows = []
    for set_name in args.sets.split(","):
        rows += measure(set_name, args)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=2))
        print(set_block(by_set(rows)[set_name], args), flush=True)
    if not args.no_docs:
        title = "Self-configuring training: each rule of the plan against its alternative"
        title += f" ({args.section})" if args.section else ""
        write_section("plan-rules", title, HEADER)
        for set_name, part in by_set(rows).items():
            key = f"plan-rules-{args.section}-{set_name}" if args.section else f"plan-rules-{set_name}"
            print(f"wrote {write_section(key, f'{title}: {set_name}', set_block(part, args))}")


if __name__ == "__main__":
    main()
