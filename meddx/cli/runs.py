"""Commands on runs: train, plan, demo, evaluate, ensemble, compare, cv."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from meddx.cli.options import (
    DATA_OPTIONS,
    BudgetOpt,
    ConfigOpt,
    SetOpt,
    budget_minutes,
    depth_value,
    given,
    set_overrides,
    with_data_options,
)
from meddx.errors import ConfigError

OperatingOpt = Annotated[
    Optional[str],
    typer.Option(
        "--operating-point", "-t", help="youden, fixed=0.3, sensitivity=0.95 or specificity=0.9; chosen on val."
    ),
]
BootstrapOpt = Annotated[Optional[int], typer.Option(help="Bootstrap resamples of patients (0: no intervals).")]


@with_data_options("data", "root", "fmt", "image_column", "patient_column", "patient_regex", "label_column",
                   "label_columns", "positive_class", "views", "allow_outside_root", "skip_unreadable")  # fmt: skip
def train(
    config: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `meddx models`).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    devices: Annotated[
        Optional[int], typer.Option(help="Processes/devices; >1 runs Lightning DDP (gloo on CPU).")
    ] = None,
    accelerator: Annotated[Optional[str], typer.Option(help="auto, cpu or gpu.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name under output_dir.")] = None,
    output_dir: Annotated[
        Optional[str], typer.Option("--output-dir", "-o", help="Where run folders go (default runs/).")
    ] = None,
    set_: SetOpt = None,
    init_from: Annotated[
        Optional[str], typer.Option(help="Run folder or local state-dict file to fine-tune from (head skipped).")
    ] = None,
    budget: BudgetOpt = None,
    finetune_depth: Annotated[
        Optional[str], typer.Option(help="Trainable backbone blocks: 0 (head only) ... or all; see `meddx model-info`.")
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue this killed or failed run from its last checkpoint.")
    ] = None,
    data_overrides: dict | None = None,
) -> None:
    """Train a model, evaluate it on the test split and write the run folder. Every recipe option not given is
    planned from the data and the budget (`meddx plan` shows the plan first; --set plan.enabled=false: defaults)."""
    from meddx.api import train as api_train
    from meddx.evaluation.summary import print_summary

    if resume is not None:
        from meddx.api import resume as api_resume

        options = [config, model, epochs, devices, accelerator, name, output_dir, set_, init_from, budget]
        if any(v is not None for v in [*options, finetune_depth]) or data_overrides:
            raise ConfigError("--resume continues a run exactly as it was configured: give no other option")
        print_summary(api_resume(resume))
        return

    overrides = {
        **data_overrides,
        **given(
            **{
                "model.name": model,
                "train.max_epochs": epochs,
                "train.devices": devices,
                "train.accelerator": accelerator,
                "name": name,
                "output_dir": output_dir,
                "train.init_from": init_from,
                "train.finetune_depth": depth_value(finetune_depth),
                "plan.budget_minutes": budget_minutes(budget),
            }
        ),
        **set_overrides(set_),
    }
    print_summary(api_train(config, **overrides))


@with_data_options(*DATA_OPTIONS)
def plan(
    config: ConfigOpt = None,
    budget: BudgetOpt = None,
    accelerator: Annotated[Optional[str], typer.Option(help="auto, cpu or gpu: the hardware the plan is for.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for plan.json and plan.md.")] = None,
    set_: SetOpt = None,
    data_overrides: dict | None = None,
) -> None:
    """Plan a run without training it: the data's fingerprint and every choice with its reason, epochs and ensemble
    size fitted to the budget by a timed pilot; `meddx train` with the same options trains this plan."""
    from meddx.api import plan as api_plan

    options = given(**{"plan.budget_minutes": budget_minutes(budget), "train.accelerator": accelerator})
    out = api_plan(config, output, **{**data_overrides, **options, **set_overrides(set_)})
    typer.echo((out / "plan.md").read_text())
    typer.echo(f"wrote {out / 'plan.json'} and {out / 'plan.md'}")


def demo(
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs (default: planned).")] = None,
    output_dir: Annotated[str, typer.Option(help="Where the run folder goes.")] = "runs",
    budget: Annotated[str, typer.Option(help="Time for training, as for `meddx train --budget`.")] = "3m",
) -> None:
    """Plan, train and evaluate on the bundled PneumoniaMNIST (CC BY 4.0) within a short budget."""
    from meddx.api import train as api_train
    from meddx.evaluation.summary import print_summary

    overrides = {
        "data.path": "pneumoniamnist",
        "name": "demo-pneumoniamnist",
        "output_dir": output_dir,
        "plan.budget_minutes": budget_minutes(budget),
        **given(**{"train.max_epochs": epochs}),
    }
    print_summary(api_train(None, **overrides))


@with_data_options("data", "root", "fmt", "image_column", "patient_column", "patient_regex", "label_column",
                   "label_columns", "positive_class", "allow_outside_root", "skip_unreadable")  # fmt: skip
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder, or a `meddx cv` folder: its fold ensemble, with --data.")],
    split: Annotated[
        str, typer.Option(help="Split to evaluate: test (default) or val; with --data, a name for the new set.")
    ] = "test",
    operating_point: OperatingOpt = None,
    bootstrap: BootstrapOpt = None,
    temperature_scaling: Annotated[
        Optional[bool], typer.Option("--temperature-scaling/--no-temperature-scaling", help="Fit a temperature on val.")
    ] = None,
    drop_training_overlap: Annotated[
        Optional[bool],
        typer.Option(
            "--drop-training-overlap/--stop-on-training-overlap",
            help="With --data: leave out copies of the run's train/val images (default; warned), or stop.",
        ),
    ] = None,
    by: Annotated[
        Optional[str],
        typer.Option(help="A manifest column: every figure per subgroup (sex, site); age:4 puts numbers in 4 bands."),
    ] = None,
    data_overrides: dict | None = None,
) -> None:
    """Metrics with 95% intervals beside the baselines, operating points, calibration, plots, report.html. A CV folder
    is scored as the fold ensemble `submit` uses (in CVDIR/ensemble; val: the out-of-fold predictions)."""
    from meddx.api import evaluate as api_evaluate
    from meddx.evaluation.folds import is_cv_folder, run_to_evaluate
    from meddx.evaluation.summary import print_summary

    settings = given(operating_point=operating_point, bootstrap=bootstrap, temperature_scaling=temperature_scaling)
    if drop_training_overlap is not None:
        settings["on_training_overlap"] = "drop" if drop_training_overlap else "error"
    new_data = {k.removeprefix("data."): v for k, v in data_overrides.items()}
    if new_data and "path" not in new_data:  # --root, --skip-unreadable ... describe new data: there is none
        named = ", ".join(f"data.{k}" for k in new_data)
        raise ConfigError(
            f"{named}: options of new data, given without --data (the run's own splits are read as trained)"
        )
    r = run_to_evaluate(run, new_data or None)
    result = api_evaluate(r, split=split, data=new_data or None, by=by, **settings)
    print_summary(r, result["name"])
    if result["name"] != "test" and not is_cv_folder(run):  # a fold ensemble has no headline of its own
        used = r.metrics("test").get("operating_point", {}).get("rule", "the config's rule, chosen on val")
        typer.echo(f"the package and `meddx serve` keep the headline operating point (metrics.json: {used})")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders evaluated on the same test patients.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for compare.json/.md/.html.")] = None,
    split: Annotated[str, typer.Option(help="Split to compare: test (default), val, or an external name.")] = "test",
    bootstrap: Annotated[int, typer.Option(min=100, help="Patient resamples for the paired intervals.")] = 2000,
) -> None:
    """Rank runs on the same test patients: figures with intervals, paired differences from the best, DeLong's test."""
    from rich.table import Table

    from meddx.api import compare as api_compare
    from meddx.evaluation.compare import comparison_table
    from meddx.logs import terminal

    result = api_compare(runs, output, split, bootstrap)
    header, rows = comparison_table(result)
    shown = ("rank", "run", "recipe", "ROC AUC", "ROC AUC - best", "DeLong p", "verdict")  # the rest: the files
    keep = [header.index(name) for name in shown]
    table = Table(*[header[k] for k in keep], title=f"{result['split']}: {result['samples']} samples")
    for row in rows:
        table.add_row(*[row[k] for k in keep])
    terminal().print(table)
    if split == "test":  # a test split that chose the recipe no longer estimates how the chosen one does
        typer.echo("ranked on test, to report; to choose between recipes compare on val (--split val) or with `cv`")
    typer.echo(f"wrote {result['output']}/compare.html (and .md, .json)")


def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Run folders trained on an identical split.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the ensemble.")],
    operating_point: OperatingOpt = None,
    bootstrap: BootstrapOpt = None,
    weights: Annotated[
        str, typer.Option(help="equal, or val: greedy ensemble selection on val (weak runs may get 0).")
    ] = "equal",
) -> None:
    """Average k runs' probabilities and evaluate the average like one model (report, metrics.json)."""
    from meddx.api import ensemble as api_ensemble
    from meddx.evaluation.ensemble import against_members
    from meddx.evaluation.summary import print_summary

    settings = given(operating_point=operating_point, bootstrap=bootstrap)
    run = api_ensemble([str(r) for r in runs], output, weights=weights, **settings)
    print_summary(run)
    typer.echo(against_members(run))


@with_data_options(*DATA_OPTIONS)
def cv(
    config: Annotated[Optional[Path], typer.Argument(help="YAML run config (or --data and options, as train).")] = None,
    folds: Annotated[int, typer.Option(help="Number of folds (iterative stratification).")] = 5,
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `meddx models`).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    name: Annotated[Optional[str], typer.Option(help="CV folder name under output_dir.")] = None,
    budget: BudgetOpt = None,
    output_dir: Annotated[
        Optional[str], typer.Option("--output-dir", "-o", help="Where the CV folder goes (default runs/).")
    ] = None,
    set_: SetOpt = None,
    config_option: ConfigOpt = None,
    data_overrides: dict | None = None,
) -> None:
    """k-fold training: one run per fold, out-of-fold predictions and their scores; the folder is a fold ensemble.
    Every recipe option not given is planned once, as `meddx train` plans, with the budget shared by the folds."""
    from meddx.api import cross_validate
    from meddx.evaluation.cv_summary import cv_summary

    config = config or config_option  # `meddx cv run.yaml` or, as train, `meddx cv -c run.yaml`
    if config is None and not data_overrides.get("data.path"):
        raise ConfigError("give a YAML run config or --data (a folder, CSV or .npz) for `meddx cv`")
    own = given(
        **{
            "model.name": model,
            "train.max_epochs": epochs,
            "name": name,
            "output_dir": output_dir,
            "plan.budget_minutes": budget_minutes(budget),
        }
    )
    out = cross_validate(config, folds, **data_overrides, **own, **set_overrides(set_))
    line, warning = cv_summary(out)
    typer.echo(line)
    if warning:
        typer.echo(f"WARNING: {warning}", err=True)


def register(app: typer.Typer) -> None:
    for command in (train, plan, demo, evaluate, ensemble, compare, cv):
        app.command()(command)
