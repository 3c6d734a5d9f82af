"""The evaluated split's headline for a terminal: a rich table of each label beside the prior, the warnings, and where
the report is."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from meddx.data.records import SPLITS
from meddx.evaluation.data_section import leakage_text
from meddx.evaluation.scores import COMPETITIONS
from meddx.evaluation.sections import fmt, patients_text, transfer_summary, warnings_of
from meddx.evaluation.subgroups import subgroup_text
from meddx.logs import terminal
from meddx.run import DATA, PREDICTIONS, Run, read_json, split_suffix


def headline(metrics: dict, patients: str = "") -> Table:
    """Each label's ROC AUC, PR AUC (and the prior's), sensitivity and specificity, and whether it beats the prior;
    `patients`: how the split's patients are said (default 'N patients')."""
    intervals = f"{metrics['bootstrap']['ci']:.0%} intervals" if metrics["bootstrap"]["resamples"] else "no intervals"
    unknown = {n: k for n, k in (metrics.get("unknown_labels") or {}).items() if k}
    left_out = f" ({', '.join(f'{n}: {k} unknown, left out' for n, k in unknown.items())})" if unknown else ""
    table = Table(
        title=f"{metrics['split']} split: {metrics['n_samples']} samples{left_out}, "
        f"{patients or str(metrics['n_patients']) + ' patients'}; "
        f"operating point {_rule(metrics['operating_point']['rule'])}; {intervals}"
    )
    for col in ("label", "ROC AUC", "PR AUC", "prior PR AUC", "sensitivity", "specificity", "beats prior"):
        table.add_column(col)
    for n in metrics["labels"]:
        per, prior = metrics["model"]["per_label"][n], metrics["baselines"]["prior"]["per_label"][n]
        table.add_row(
            n,
            fmt(per["roc_auc"]),
            fmt(per["pr_auc"]),
            fmt(prior["pr_auc"]),
            fmt(per["sensitivity"]),
            fmt(per["specificity"]),
            "n/a: one class"
            if per["roc_auc"]["value"] is None
            else "yes"
            if metrics["beats_prior"][n]
            else "[bold red]NO[/]",
        )
    return table


def competition_line(name: str, scores: dict, keys: list[str]) -> str:
    """One line of a competition's figures (its table's columns) for the model, and the prior baseline's score."""
    model, prior = scores["model"], scores.get("baselines", {}).get("prior", {})
    figures = ", ".join(f"{k} {model[k]:.4f}" for k in keys if k != "score" and k in model)
    prior_score = prior.get("score", float("nan"))
    return f"{name}: score {model['score']:.4f} ({figures}); prior baseline score {prior_score:.4f}"


def print_summary(run: Run | None, split: str = "test", console: Console | None = None) -> None:
    """Print a run's evaluated split (nothing when it was not evaluated, or in a distributed worker: run None)."""
    metrics = run.metrics(split) if run is not None else {}
    if not metrics:
        return
    console = console if console is not None and console.is_terminal else terminal()
    console.print(headline(metrics, patients_text(metrics, run)))
    if metrics["split"] in SPLITS and (transfer := transfer_summary(run)):  # that the weights loaded, and how
        console.print(f"fine-tuning: {transfer.removeprefix('; ')}", markup=False, highlight=False)
    source = read_json(run.path / PREDICTIONS / f"{metrics['split']}.data.json")  # new data: how it was read
    source = source or read_json(run.path / DATA)  # the run's own splits: how its data was read (copies dropped...)
    for note in source.get("notes") or []:
        console.print(f"note: {note}", markup=False, highlight=False)
    if metrics["split"] not in SPLITS:  # new data: what its check against the training images found
        line = leakage_text(run, metrics["split"], read_json(run.path / DATA))  # its sizes: how much of its test
        console.print(f"leakage check: {line}", markup=False, highlight=False)
    if sub := metrics.get("subgroups"):
        console.print(subgroup_lines(sub), markup=False, highlight=False)
    for w in warnings_of(metrics):
        console.print(f"[bold red]WARNING:[/] {w}", markup=True, highlight=False)
    for name, competition in COMPETITIONS.items():
        if isinstance(metrics.get(name), dict):
            console.print(competition_line(name, metrics[name], competition.keys(metrics[name])), highlight=False)
    suffix = split_suffix(split)
    console.print(
        f"run folder: {run.path}\nreport: {run.path / f'report{suffix}.html'} (and report{suffix}.md)", highlight=False
    )


def subgroup_lines(sub: dict) -> str:
    """Subgroups for a terminal: each group's samples and ROC AUC with its interval, then the gap in words."""
    lines = [f"subgroups by {sub['column']}:"]
    for name, group in sub["groups"].items():
        figures = group.get("figures", {})
        auc, macro = figures.get("roc_auc"), "macro " if "label_roc_auc" in group else ""
        scored = f"{macro}ROC AUC {fmt(auc)}" if auc else f"not scored ({group.get('unscored', 'too small')})"
        if group.get("one_class") and auc and auc.get("value") is None:  # every case of one class: no AUC to rank
            defined = [f"{k} {fmt(figures[k])}" for k in ("sensitivity", "specificity") if fmt(figures[k]) != "n/a"]
            scored = "one class only, ROC AUC undefined" + "".join(f"; {d}" for d in defined)
        lines.append(f"  {name}: {group['samples']} samples, {scored}")
    return "\n".join([*lines, subgroup_text(sub)])


def _rule(rule: str) -> str:
    """The operating point in words: argmax is no threshold and nothing chose it."""
    return "argmax (the most probable class)" if rule == "argmax" else f"{rule} (chosen on val)"
