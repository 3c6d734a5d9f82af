"""`evaluate_run`: a run folder's predictions to metrics.json, figures, report.md and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from meddx.config import EvaluateConfig
from meddx.errors import DataError
from meddx.evaluate.evaluation import decisions, evaluate_arrays
from meddx.evaluate.operating import choose_threshold, label_name, parse_operating_point
from meddx.evaluate.plots import write_figures
from meddx.train.collapse import collapse_message
from meddx.train.run import Run

BASELINES = ("prior", "all_negative", "random", "majority")
HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
TITLES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "log_loss": "log loss", "brier": "Brier", "sensitivity": "sensitivity",
          "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "f1": "F1", "accuracy": "accuracy",
          "mlogloss": "mlogloss", "exact_match": "exact match"}


def run_operating_point(run: Run) -> tuple[dict[str, float], str]:
    """Thresholds per label and the rule's name: the last test evaluation's (metrics.json), else the config's rule
    chosen on val now; multi-class decides by argmax."""
    names = run.label_names
    if run.task == "multiclass":
        return {n: 0.5 for n in names}, "argmax"
    op = _read_json(run.path / "metrics.json").get("operating_point", {})
    if op.get("thresholds"):
        return {n: float(op["thresholds"][n]) for n in names}, op.get("rule", "")
    method, value = parse_operating_point(run.config.evaluate.operating_point)
    val = run.predictions("val")
    return ({n: choose_threshold(val[n].to_numpy(), val[f"p_{n}"].to_numpy(), method, value) for n in names},
            label_name(method, value))


def _arrays(run: Run, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = run.predictions(split)
    names = run.label_names
    return df[names].to_numpy(np.float64), df[[f"p_{n}" for n in names]].to_numpy(np.float64), df["patient_id"].to_numpy()


def evaluate_run(run: Run | str | Path, split: str = "test", config: EvaluateConfig | None = None) -> dict:
    """Evaluate one split of a run (thresholds and temperature from val) and write metrics.json and the reports."""
    run = run if isinstance(run, Run) else Run(run)
    cfg = config or run.config.evaluate
    names = run.label_names
    if not (run.path / "predictions" / f"{split}.csv").is_file():
        raise DataError(f"{run.path}: no predictions for split '{split}' (predictions/{split}.csv)")
    y_val, p_val, _ = _arrays(run, "val")
    y, p, patients = _arrays(run, split)
    table = pd.read_csv(run.path / "split.csv", dtype={"id": str, "patient_id": str})
    prior = table.loc[table["split"] == "train", names].to_numpy(np.float64).mean(0)
    result = evaluate_arrays(y_val, p_val, y, p, patients, prior, run.task, names, cfg, split=split)
    if run.is_sequence:  # the Tianchi track: the competition's score (round 2: regions and types apart) and baselines
        from meddx.evaluate.tianchi import tianchi_scores

        result["tianchi"] = tianchi_scores(y, p, names, prior=prior, seed=cfg.seed)
    result["evaluated_at"] = datetime.now().isoformat(timespec="seconds")
    if split == "val":
        result["warning_same_split"] = "thresholds were chosen on this same split: figures at the operating point are optimistic"
    training = _read_json(run.path / "training.json")
    result["collapse"] = {"evaluation": result["collapse"], "training": training.get("collapse")}
    thresholds = None if result["operating_point"]["thresholds"] is None else np.array(
        [result["operating_point"]["thresholds"][n] for n in names])
    if result["calibration"]["temperature"]:
        from meddx.evaluate.calibration import apply_temperature

        p = apply_temperature(p, result["calibration"]["temperature"])
    suffix = "" if split == "test" else f"-{split}"  # the test split's report is the run's headline
    figures = write_figures(y, p, decisions(p, run.task, thresholds), names, run.task, thresholds,
                            result["calibration"]["per_label"], run.path / f"figures{suffix}")
    (run.path / f"metrics{suffix}.json").write_text(json.dumps(result, indent=2))
    (run.path / f"report{suffix}.md").write_text(render_markdown(run, result, figures))
    (run.path / f"report{suffix}.html").write_text(render_html(run, result, figures))
    return result


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def fmt(fig: dict | None, digits: int = 3) -> str:
    """'0.912 (0.871-0.944)' for a figure with an interval, 'n/a' when undefined."""
    if not fig or fig.get("value") is None:
        return "n/a"
    s = f"{fig['value']:.{digits}f}"
    return s + (f" ({fig['ci_low']:.{digits}f}-{fig['ci_high']:.{digits}f})" if "ci_low" in fig else "")


def warnings_of(result: dict) -> list[str]:
    """The plain-words warnings a reviewer must see first."""
    out = []
    ev, tr = result["collapse"]["evaluation"], result["collapse"].get("training") or {}
    if ev["collapsed"]:
        out.append(collapse_message(ev))
    elif ev["flat_labels"]:
        out.append(f"near-constant predictions on {', '.join(ev['flat_labels'])}")
    if tr.get("collapsed_epochs"):
        out.append(f"collapse during training in epoch(s) {tr['collapsed_epochs']}")
    losers = [n for n, ok in result["beats_prior"].items() if not ok]
    if losers:
        out.append(f"does not beat the prior baseline (AUC interval not above 0.5, or PR AUC not above prevalence): {', '.join(losers)}")
    if "warning_same_split" in result:
        out.append(result["warning_same_split"])
    return out


def _summary_rows(result: dict) -> list[tuple[str, dict]]:
    """(row name, metrics block) for the model and each baseline."""
    return [("model", result["model"])] + [(f"baseline: {b}", result["baselines"][b]) for b in BASELINES]


def _competition_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The Tianchi score table (model and baselines): header and rows; empty for image runs."""
    t = result.get("tianchi")
    if not t:
        return [], []
    keys = ["mlogloss", "score"] + (["regions_mlogloss", "types_mlogloss"] if "regions_mlogloss" in t["model"] else [])
    header = ["", *keys, "mean ROC AUC", "exact match"]
    f4 = "{:.4f}".format
    rows = [["model", *(f4(t["model"][k]) for k in keys), f4(t["model"]["mean_roc_auc"]), f4(t["model"]["exact_match"])]]
    rows += [[f"baseline: {b}", *(f4(v[k]) for k in keys), "", ""] for b, v in t["baselines"].items()]
    return header, rows


def render_markdown(run: Run, result: dict, figures: dict[str, Path]) -> str:
    info = run.data_info
    training = _read_json(run.path / "training.json")
    names = result["labels"]
    lines = [f"# meddx report: `{run.path.name}`", "", f"Split evaluated: **{result['split']}** ({result['n_samples']} samples, "
             f"{result['n_patients']} patients); operating point: **{result['operating_point']['rule']}**, chosen on val; "
             f"{result['bootstrap']['resamples']} bootstrap resamples of patients, {result['bootstrap']['ci']:.0%} intervals.", ""]
    for w in warnings_of(result):
        lines.append(f"> **WARNING**: {w}")
    lines += ["", "## Data", "", f"- source: `{info['origin']}`; task: {info['task']}; labels: {', '.join(names)}",
              "- leakage check: " + ("passed" if info["leakage"]["ok"] else "FOUND LEAKAGE")]
    lines += [f"- {n}" for n in info.get("notes", [])]
    lines += ["", "| split | samples | patients |", "|---|---|---|"]
    lines += [f"| {s} | {v['samples']} | {v['patients']} |" for s, v in info["sizes"].items()]
    model_input = (f"input token sequences padded to {run.vocab.max_len}, vocabulary {run.vocab.size}" if run.is_sequence else
                   f"input {run.preprocess.channels} x {run.preprocess.image_size[0]} x {run.preprocess.image_size[1]}, "
                   f"normalisation {run.preprocess.normalize}")
    lines += ["", "## Model", "", f"- `{run.config.model.name}`, {model_input}",
              f"- best epoch {training.get('best_epoch')} of {training.get('epochs_run')}; {training.get('seconds')} s; "
              f"val loss {training.get('initial_val_loss', float('nan')):.4f} untrained -> {training.get('best_val_loss', float('nan')):.4f}"]
    header, rows = _competition_rows(result)
    if rows:
        lines += ["", "## Competition score", "", "mlogloss as the competition computes it (BCE averaged over labels, then "
                  "samples; clipped at 1e-15); score = 1 - mlogloss (round 2: 0.6 x regions + 0.4 x types).", "",
                  "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    for n in names:
        lines += ["", f"## {n}", "", "| | " + " | ".join(TITLES[k] for k in HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
        for row, block in _summary_rows(result):
            lines.append(f"| {row} | " + " | ".join(fmt(block["per_label"][n].get(k)) for k in HEADLINE) + " |")
        if not result["beats_prior"][n]:
            lines.append(f"\n**{n}: the model does not beat the prior baseline.**")
        if result.get("tradeoff"):
            lines += ["", "Operating points (chosen on val, applied to test):", "",
                      "| rule | threshold | val sens | val spec | test sens | test spec | test PPV | test NPV |", "|---|---|---|---|---|---|---|---|"]
            for r in result["tradeoff"][n]:
                lines.append(f"| {r['rule']} | {r['threshold']:.4g} | {r['val_sensitivity']:.3f} | {r['val_specificity']:.3f} | "
                             f"{r['test_sensitivity']:.3f} | {r['test_specificity']:.3f} | {_num(r['test_ppv'])} | {_num(r['test_npv'])} |")
    lines += ["", "## Overall", "", "| | " + " | ".join(_overall_keys(result)) + " |", "|---" * (len(_overall_keys(result)) + 1) + "|"]
    for row, block in _summary_rows(result):
        lines.append(f"| {row} | " + " | ".join(fmt(v) for v in _overall_values(block, result)) + " |")
    cal = result["calibration"]
    lines += ["", "## Calibration", "", f"- temperature scaling: {cal['temperature']:.3f} (fitted on val)" if cal["temperature"]
              else "- temperature scaling: off"]
    lines += [f"- {n}: ECE {cal['per_label'][n]['ece']:.4f}" + (f" (before scaling {cal['ece_before'][n]:.4f})" if "ece_before" in cal else "")
              for n in names]
    lines += ["", "## Figures", ""] + [f"![{k}]({p.parent.name}/{p.name})" for k, p in figures.items()]
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _overall_keys(result: dict) -> list[str]:
    keys = [f"macro {TITLES[k]}" for k in ("roc_auc", "pr_auc")]
    keys += [TITLES[k] for k in result["model"]["overall"]]
    if result["model"]["micro"]:
        keys += ["micro ROC AUC", "micro PR AUC"]
    return keys


def _overall_values(block: dict, result: dict) -> list[dict | None]:
    vals = [block["macro"]["roc_auc"], block["macro"]["pr_auc"]] + [block["overall"][k] for k in result["model"]["overall"]]
    if result["model"]["micro"]:
        vals += [block["micro"].get("roc_auc"), block["micro"].get("pr_auc")]
    return vals


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child{text-align:left}tr.model{font-weight:600;background:#f3f7ff}
.warn{background:#fde8e8;color:#a00;border-left:5px solid #c00;padding:.6em 1em;margin:.5em 0;font-weight:600}
.bad{color:#c00;font-weight:700}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}code{background:#f4f4f4}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{path.stem}" src="data:image/png;base64,{data}"><figcaption>{path.stem}</figcaption></figure>'


def render_html(run: Run, result: dict, figures: dict[str, Path]) -> str:
    """The report as one HTML file with its figures embedded."""
    e = html.escape
    info = run.data_info
    training = _read_json(run.path / "training.json")
    names = result["labels"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>meddx report {e(run.path.name)}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>meddx report: <code>{e(run.path.name)}</code></h1>",
             f"<p>Split evaluated: <b>{e(result['split'])}</b> ({result['n_samples']} samples, {result['n_patients']} patients); "
             f"operating point <b>{e(result['operating_point']['rule'])}</b> chosen on val; {result['bootstrap']['resamples']} "
             f"bootstrap resamples of patients, {result['bootstrap']['ci']:.0%} intervals.</p>"]
    parts += [f"<div class='warn'>WARNING: {e(w)}</div>" for w in warnings_of(result)]
    leak = info["leakage"]
    parts += ["<h2>Data</h2>", f"<p>Source <code>{e(info['origin'])}</code>; task {e(info['task'])}; labels: {e(', '.join(names))}.</p>",
              "<p>Leakage check: " + ("<b>passed</b>" if leak["ok"] else "<span class='bad'>FOUND LEAKAGE</span>") + "</p>",
              "<ul>" + "".join(f"<li>{e(n)}</li>" for n in info.get("notes", [])) + "</ul>",
              "<table><tr><th>split</th><th>samples</th><th>patients</th></tr>"
              + "".join(f"<tr><td>{s}</td><td>{v['samples']}</td><td>{v['patients']}</td></tr>" for s, v in info["sizes"].items())
              + "</table>"]
    model_input = (f"input token sequences padded to {run.vocab.max_len}, vocabulary {run.vocab.size}" if run.is_sequence else
                   f"input {run.preprocess.channels} x {run.preprocess.image_size[0]} x {run.preprocess.image_size[1]}, "
                   f"normalisation {e(run.preprocess.normalize)}")
    parts += ["<h2>Model and config</h2>", f"<p><code>{e(run.config.model.name)}</code>, {model_input}; "
              f"best epoch {training.get('best_epoch')} of {training.get('epochs_run')}, {training.get('seconds')} s.</p>",
              "<details><summary>config.yaml</summary><pre>" + e(yaml.safe_dump(run.config.model_dump(mode="json"), sort_keys=False))
              + "</pre></details>"]
    header, rows = _competition_rows(result)
    if rows:
        parts += ["<h2>Competition score</h2>", "<p>mlogloss as the competition computes it; score = 1 - mlogloss "
                  "(round 2: 0.6 x regions + 0.4 x types).</p>",
                  "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                  + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"]
    for n in names:
        parts.append(f"<h2>{e(n)}</h2>")
        if not result["beats_prior"][n]:
            parts.append(f"<div class='warn'>{e(n)}: the model does not beat the prior baseline.</div>")
        parts.append("<table><tr><th></th>" + "".join(f"<th>{TITLES[k]}</th>" for k in HEADLINE) + "</tr>")
        for row, block in _summary_rows(result):
            cls = "model" if row == "model" else ""
            parts.append(f"<tr class='{cls}'><td>{e(row)}</td>" + "".join(f"<td>{fmt(block['per_label'][n].get(k))}</td>" for k in HEADLINE) + "</tr>")
        parts.append("</table>")
        if result.get("tradeoff"):
            parts.append("<p>Operating points, chosen on val and applied unchanged to test:</p><table><tr><th>rule</th><th>threshold</th>"
                         "<th>val sens</th><th>val spec</th><th>test sens</th><th>test spec</th><th>test PPV</th><th>test NPV</th></tr>")
            for r in result["tradeoff"][n]:
                parts.append(f"<tr><td>{e(r['rule'])}</td><td>{r['threshold']:.4g}</td><td>{r['val_sensitivity']:.3f}</td>"
                             f"<td>{r['val_specificity']:.3f}</td><td>{r['test_sensitivity']:.3f}</td><td>{r['test_specificity']:.3f}</td>"
                             f"<td>{_num(r['test_ppv'])}</td><td>{_num(r['test_npv'])}</td></tr>")
            parts.append("</table>")
    keys = _overall_keys(result)
    parts += ["<h2>Overall</h2><table><tr><th></th>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>"]
    for row, block in _summary_rows(result):
        parts.append(f"<tr class='{'model' if row == 'model' else ''}'><td>{e(row)}</td>"
                     + "".join(f"<td>{fmt(v)}</td>" for v in _overall_values(block, result)) + "</tr>")
    parts.append("</table>")
    cal = result["calibration"]
    parts += ["<h2>Calibration</h2><ul>" + (f"<li>temperature {cal['temperature']:.3f}, fitted on val</li>" if cal["temperature"] else "")
              + "".join(f"<li>{e(n)}: ECE {cal['per_label'][n]['ece']:.4f}</li>" for n in names) + "</ul>"]
    parts += ["<h2>Figures</h2>"] + [_img(p) for p in figures.values()]
    parts.append("</body></html>")
    return "\n".join(parts)
