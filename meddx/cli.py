"""The `meddx` command: a thin layer over meddx.api. Heavy imports happen inside each command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from meddx.errors import MeddxError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Honest, explained, deployable medical diagnosis classifiers.")

DataOpt = Annotated[Optional[list[str]], typer.Option("--data", "-d", help="CSV, folder, .npz or 'pneumoniamnist'; repeat as split=file.csv for official split CSVs.")]
RootOpt = Annotated[Optional[str], typer.Option(help="Folder that CSV image paths are relative to.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="auto, csv, folder or medmnist.")]
PatientColOpt = Annotated[Optional[str], typer.Option(help="Patient id column of a CSV.")]
PatientRegexOpt = Annotated[Optional[str], typer.Option(help="Regex on file names; group 1 is the patient id.")]
LabelColOpt = Annotated[Optional[str], typer.Option(help="One column of class names.")]
LabelColsOpt = Annotated[Optional[str], typer.Option(help="Comma-separated 0/1 label columns.")]
ViewsOpt = Annotated[Optional[str], typer.Option(help="Comma-separated slice/projection indices used as channels, e.g. 0,60.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Any config field as dotted.key=value (YAML value).")]


def _data_overrides(data, root, fmt, patient_column, patient_regex, label_column, label_columns, views) -> dict:
    out: dict = {}
    if data:
        if all("=" in d for d in data):
            out["data.path"] = dict(d.split("=", 1) for d in data)
        elif len(data) == 1:
            out["data.path"] = data[0]
        else:
            raise MeddxError("give one --data path, or several as split=file.csv")
    for key, value in [("root", root), ("format", fmt), ("patient_column", patient_column),
                       ("patient_regex", patient_regex), ("label_column", label_column)]:
        if value is not None:
            out[f"data.{key}"] = value
    if label_columns:
        out["data.label_columns"] = [c.strip() for c in label_columns.split(",")]
    if views:
        try:
            out["data.views"] = [int(v) for v in views.split(",")]
        except ValueError:
            raise MeddxError(f"--views must be comma-separated integers, got {views!r}") from None
    return out


def _set_overrides(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise MeddxError(f"--set expects dotted.key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML run config.")] = None,
    data: DataOpt = None, root: RootOpt = None, fmt: FormatOpt = None, patient_column: PatientColOpt = None,
    patient_regex: PatientRegexOpt = None, label_column: LabelColOpt = None, label_columns: LabelColsOpt = None,
    views: ViewsOpt = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `meddx models`).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    devices: Annotated[Optional[int], typer.Option(help="Processes/devices; >1 runs Lightning DDP (gloo on CPU).")] = None,
    accelerator: Annotated[Optional[str], typer.Option(help="auto, cpu or gpu.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name under output_dir.")] = None,
    output_dir: Annotated[Optional[str], typer.Option(help="Where run folders go (default runs/).")] = None,
    set_: SetOpt = None,
    init_from: Annotated[Optional[str], typer.Option(help="Run folder or local state-dict file to fine-tune from (head skipped).")] = None,
    finetune_depth: Annotated[Optional[str], typer.Option(help="Trainable backbone blocks: 0 (head only) ... or all; see `meddx model-info`.")] = None,
) -> None:
    """Train a model, evaluate it on the test split and write the run folder."""
    from meddx.api import train as api_train
    from meddx.config import load_config

    overrides = _data_overrides(data, root, fmt, patient_column, patient_regex, label_column, label_columns, views)
    for key, value in [("model.name", model), ("train.max_epochs", epochs), ("train.devices", devices),
                       ("train.accelerator", accelerator), ("name", name), ("output_dir", output_dir),
                       ("train.init_from", init_from), ("train.finetune_depth", _depth_value(finetune_depth))]:
        if value is not None:
            overrides[key] = value
    overrides.update(_set_overrides(set_))
    run = api_train(load_config(config, overrides))
    _print_summary(run)


def _depth_value(depth: str | None) -> int | str | None:
    """'all' stays a string, digits become an int (validated by the config)."""
    return int(depth) if depth is not None and depth.strip().isdigit() else depth


def _print_summary(run, split: str = "test") -> None:
    """The evaluated split's headline table and warnings, then where the report is."""
    from rich.console import Console
    from rich.table import Table

    from meddx.evaluate.report import fmt, warnings_of
    from meddx.train.run import is_rank_zero

    suffix = "" if split == "test" else f"-{split}"
    if run is None or not is_rank_zero() or not (run.path / f"metrics{suffix}.json").is_file():
        return
    m = json.loads((run.path / f"metrics{suffix}.json").read_text())
    console = Console()
    if not console.is_terminal:
        console = Console(width=130)
    table = Table(title=f"{m['split']} split: {m['n_samples']} samples, {m['n_patients']} patients; "
                        f"operating point {m['operating_point']['rule']} (chosen on val); 95% intervals")
    for col in ("label", "ROC AUC", "PR AUC", "prior PR AUC", "sensitivity", "specificity", "beats prior"):
        table.add_column(col)
    for n in m["labels"]:
        per, prior = m["model"]["per_label"][n], m["baselines"]["prior"]["per_label"][n]
        ok = m["beats_prior"][n]
        table.add_row(n, fmt(per["roc_auc"]), fmt(per["pr_auc"]), fmt(prior["pr_auc"]), fmt(per["sensitivity"]),
                      fmt(per["specificity"]), "yes" if ok else "[bold red]NO[/]")
    console.print(table)
    for w in warnings_of(m):
        console.print(f"[bold red]WARNING:[/] {w}", markup=True, highlight=False)
    console.print(f"run folder: {run.path}\nreport: {run.path / f'report{suffix}.html'} (and report{suffix}.md)", highlight=False)


@app.command()
def demo(
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs (default from the config).")] = None,
    output_dir: Annotated[str, typer.Option(help="Where the run folder goes.")] = "runs",
) -> None:
    """Train and evaluate the default recipe on the bundled PneumoniaMNIST (CC BY 4.0)."""
    from meddx.api import train as api_train
    from meddx.config import load_config

    overrides = {"data.path": "pneumoniamnist", "name": "demo-pneumoniamnist", "output_dir": output_dir,
                 "split.on_duplicate_images": "drop_from_train"}
    if epochs:
        overrides["train.max_epochs"] = epochs
    _print_summary(api_train(load_config(None, overrides)))


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    files: Annotated[list[Path], typer.Argument(help="Images (PNG, JPEG, DICOM, NPY).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write a CSV here.")] = None,
) -> None:
    """Probabilities per label for new scans."""
    from meddx.api import load_run

    df = load_run(run).predict([str(f) for f in files])
    if output:
        df.to_csv(output, index=False)
        typer.echo(f"wrote {output}")
    else:
        typer.echo(df.to_string(index=False))


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    split: Annotated[str, typer.Option(help="Split to evaluate: test (default) or val; with --data, a name for the new set.")] = "test",
    operating_point: Annotated[Optional[str], typer.Option("--operating-point", "-t", help="youden, fixed=0.3, sensitivity=0.95 or specificity=0.9; chosen on val.")] = None,
    bootstrap: Annotated[Optional[int], typer.Option(help="Bootstrap resamples of patients (0: no intervals).")] = None,
    temperature_scaling: Annotated[Optional[bool], typer.Option("--temperature-scaling/--no-temperature-scaling", help="Fit a temperature on val.")] = None,
    data: DataOpt = None, root: RootOpt = None, fmt: FormatOpt = None, patient_column: PatientColOpt = None,
    patient_regex: PatientRegexOpt = None, label_column: LabelColOpt = None, label_columns: LabelColsOpt = None,
) -> None:
    """Metrics with 95% intervals beside the baselines, operating points, calibration, plots, report.html."""
    from meddx.api import evaluate as api_evaluate
    from meddx.api import load_run

    settings = {k: v for k, v in [("operating_point", operating_point), ("bootstrap", bootstrap),
                                  ("temperature_scaling", temperature_scaling)] if v is not None}
    overrides = _data_overrides(data, root, fmt, patient_column, patient_regex, label_column, label_columns, None)
    new_data = {k.removeprefix("data."): v for k, v in overrides.items()}
    r = load_run(run)
    result = api_evaluate(r, split=split, data=new_data or None, **settings)
    _print_summary(r, result["split"])


@app.command()
def explore(
    data: DataOpt = None, root: RootOpt = None, fmt: FormatOpt = None, patient_column: PatientColOpt = None,
    patient_regex: PatientRegexOpt = None, label_column: LabelColOpt = None, label_columns: LabelColsOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Take the data section of a run config.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for explore.json and explore.md.")] = None,
    no_images: Annotated[bool, typer.Option("--no-images", help="Skip opening files (sizes, hashes).")] = False,
    set_: SetOpt = None,
) -> None:
    """Summarise a data set: rows, patients, labels, missing/unreadable files, sizes, duplicates."""
    from rich.console import Console
    from rich.table import Table

    from meddx.api import explore as api_explore
    from meddx.config import load_config
    from meddx.data.explore import to_markdown, write_explore

    overrides = _data_overrides(data, root, fmt, patient_column, patient_regex, label_column, label_columns, None)
    cfg = load_config(config, {**overrides, **_set_overrides(set_)})
    summary = api_explore(cfg.data, read_images=not no_images)
    console = Console()
    table = Table(title=f"{summary['origin']}: {summary['rows']} rows, {summary['patients']} patients, {summary['task']}")
    for col in ("label", "positives", "negatives", "missing"):
        table.add_column(col)
    for n, v in summary["labels"].items():
        table.add_row(n, str(v["positives"]), str(v["negatives"]), str(v["missing"]))
    console.print(table)
    for line in to_markdown(summary).splitlines():
        if line.startswith("- "):
            console.print(line, markup=False, highlight=False)
    if output:
        j, m = write_explore(summary, output)
        console.print(f"wrote {j} and {m}")


@app.command("check-leakage")
def check_leakage(
    data: DataOpt = None, root: RootOpt = None, fmt: FormatOpt = None, patient_column: PatientColOpt = None,
    patient_regex: PatientRegexOpt = None, label_column: LabelColOpt = None, label_columns: LabelColsOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Take data and split of a run config.")] = None,
    set_: SetOpt = None,
) -> None:
    """Split as training would and fail (exit 1) when a patient or image sits on two sides."""
    from meddx.api import leakage
    from meddx.config import load_config

    overrides = _data_overrides(data, root, fmt, patient_column, patient_regex, label_column, label_columns, None)
    cfg = load_config(config, {**overrides, **_set_overrides(set_)})
    report = leakage(cfg.data, cfg.split)
    typer.echo(report.summary())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Package folder (default RUN/package).")] = None,
    tolerance: Annotated[float, typer.Option(help="Largest allowed difference of probabilities from PyTorch.")] = 1e-4,
) -> None:
    """Model package (model file, preprocessing, labels, operating point, card) checked for parity on real images."""
    from meddx.export import export_run

    out = export_run(run, fmt, output, tolerance)  # type: ignore[arg-type]
    parity = json.loads((out / "parity.json").read_text())
    typer.echo(f"wrote {out} ({fmt}); parity on {parity['images']} real images: max |diff| {parity['max_abs_diff']:.2e} "
               f"<= {tolerance:g}")


@app.command()
def explain(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    scans: Annotated[Optional[list[Path]], typer.Argument(help="Scan files (PNG, JPEG, DICOM, NPY); omit with --gallery.")] = None,
    label: Annotated[Optional[str], typer.Option(help="Label to explain (default: the first / positive one).")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Target layer by name (default: the last spatial feature map).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="PNG (one scan) or folder (several / gallery).")] = None,
    gallery: Annotated[bool, typer.Option("--gallery", help="HTML page of top true/false positives and false negatives.")] = False,
    split: Annotated[str, typer.Option(help="Split for --gallery.")] = "test",
    k: Annotated[int, typer.Option("-k", help="Cases per group for --gallery.")] = 6,
) -> None:
    """Grad-CAM overlays on the scans (grey levels kept, heat map blended), or a gallery over a split."""
    from meddx.explain import explain_file
    from meddx.explain import gallery as make_gallery

    if gallery:
        typer.echo(f"wrote {make_gallery(run, split, label, k, output, layer)}")
        return
    if not scans:
        raise MeddxError("give one or more scan files, or --gallery")
    for scan in scans:
        out = output if output and len(scans) == 1 and output.suffix.lower() == ".png" else (
            output / f"{scan.stem}-{label or 'map'}.png" if output else None)
        path, prob = explain_file(run, scan, label, out, layer)
        typer.echo(f"{scan}: p = {prob:.4f} -> {path}")


@app.command()
def serve(
    path: Annotated[Path, typer.Argument(help="Model package (meddx export) or run folder.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    backend: Annotated[str, typer.Option(help="auto (ONNX when the package has it), onnx or pytorch.")] = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Uploads above this get 413.")] = 20.0,
    timeout: Annotated[float, typer.Option(help="Seconds before a prediction answers 504.")] = 30.0,
    threads: Annotated[int, typer.Option(help="Inference threads.")] = 2,
) -> None:
    """HTTP service: POST /predict, GET /health, GET /model, web page at /, API docs at /docs."""
    from meddx.serve import serve as run_service

    run_service(path, host, port, backend=backend, max_upload_mb=max_upload_mb, timeout_s=timeout, threads=threads)


@app.command()
def models(all_timm: Annotated[bool, typer.Option("--all", help="Also list every timm architecture.")] = False) -> None:
    """List registered models (any timm name also works)."""
    from meddx.models import MODEL_INFO, list_models

    for n in list_models(include_timm=all_timm):
        info = MODEL_INFO.get(n)
        typer.echo(f"{n:24s} {info.description if info else ''}")


@app.command("model-info")
def model_info(
    model: Annotated[str, typer.Argument(help="Registered or timm model name.")],
    in_chans: Annotated[int, typer.Option(help="Input channels.")] = 3,
    num_classes: Annotated[int, typer.Option(help="Outputs of the head.")] = 1,
    depth: Annotated[Optional[str], typer.Option("--finetune-depth", help="Show which blocks train at this depth (N or all).")] = None,
) -> None:
    """The model's blocks for `--finetune-depth N` (block 1 is the last), with parameter counts."""
    from meddx.api import model_info as api_model_info

    rows = api_model_info(model, in_chans, num_classes, _depth_value(depth))
    typer.echo(f"{'block':>6}  {'module':32s} {'parameters':>12}" + ("  trainable" if depth is not None else ""))
    for r in rows:
        flag = ("  yes" if r["trainable"] else "  no") if depth is not None else ""
        typer.echo(f"{r['block']:>6}  {r['name']:32s} {r['params']:>12,}{flag}")
    total = sum(r["params"] for r in rows)
    trainable = sum(r["params"] for r in rows if r.get("trainable", True))
    typer.echo(f"total {total:,} parameters" + (f"; {trainable:,} trainable at depth {depth}" if depth is not None else ""))


@app.command()
def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Run folders trained on an identical split.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the ensemble.")],
    operating_point: Annotated[Optional[str], typer.Option("--operating-point", "-t", help="Chosen on the averaged val predictions.")] = None,
    bootstrap: Annotated[Optional[int], typer.Option(help="Bootstrap resamples of patients.")] = None,
    weights: Annotated[str, typer.Option(help="equal, or val: greedy ensemble selection on val (weak runs may get 0).")] = "equal",
) -> None:
    """Average k runs' probabilities and evaluate the average like one model (report, metrics.json)."""
    from meddx.api import ensemble as api_ensemble

    settings = {k: v for k, v in [("operating_point", operating_point), ("bootstrap", bootstrap)] if v is not None}
    _print_summary(api_ensemble([str(r) for r in runs], output, weights=weights, **settings))


ConfigArg = Annotated[Path, typer.Argument(help="YAML run config (data, model, train, pretrain sections).")]


@app.command()
def pretrain(config: ConfigArg, set_: SetOpt = None) -> None:
    """MLM-pretrain bert_small on all descriptions (data.path + data.vocab_files, labels unused); rerun to resume."""
    from meddx.api import pretrain as api_pretrain

    out = api_pretrain(config, **{k.replace(".", "__"): v for k, v in _set_overrides(set_).items()})
    info = json.loads((out / "pretrain.json").read_text())
    typer.echo(f"wrote {out / 'encoder.pt'} ({info['size']} size, {info['epochs']} epochs); val MLM loss "
               f"{info.get('initial_val_mlm_loss', float('nan')):.3f} -> {info['final_val_mlm_loss']:.3f}\n"
               f"fine-tune: --set model.name=bert_small --set model.weights={out / 'encoder.pt'}")


@app.command()
def cv(
    config: ConfigArg,
    folds: Annotated[int, typer.Option(help="Number of folds (iterative stratification).")] = 5,
    set_: SetOpt = None,
) -> None:
    """k-fold training: one run per fold, out-of-fold predictions and mlogloss; the folder is a fold ensemble for submit."""
    from meddx.api import cross_validate

    out = cross_validate(config, folds, **{k.replace(".", "__"): v for k, v in _set_overrides(set_).items()})
    r = json.loads((out / "cv.json").read_text())
    typer.echo(f"{out}: out-of-fold mlogloss {r['model']['mlogloss']:.4f} (score {r['model']['score']:.4f}); "
               f"prior {r['baselines']['prior']['mlogloss']:.4f}, all-zero {r['baselines']['all_zero']['mlogloss']:.4f}; "
               f"mean AUC {r['model']['mean_roc_auc']:.4f}, exact match {r['model']['exact_match']:.4f}")


@app.command()
def submit(
    runs: Annotated[list[Path], typer.Argument(help="Run folder(s), or `meddx cv` folders (fold ensembles); several are blended.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="The competition test file (report_ID|,|description).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission file.")] = Path("submission.csv"),
    weights: Annotated[str, typer.Option(help="Blend of several folders: equal, or oof (greedy selection on their "
                                               "out-of-fold predictions; cv folders only).")] = "equal",
) -> None:
    """Write a Tianchi submission: `report_ID|,|p0 ... p16`, one line per test row in order (checked)."""
    from meddx.api import submit as api_submit
    from meddx.evaluate.tianchi import blend_weights

    chosen: str | list[float] = weights
    if weights == "oof":
        chosen = blend_weights([str(r) for r in runs])
        typer.echo("weights chosen out of fold: " + ", ".join(f"{r} {w:.2f}" for r, w in zip(runs, chosen)))
    typer.echo(f"wrote {api_submit([str(r) for r in runs], data, output, chosen)}")


@app.command("check-submission")
def check_submission(
    file: Annotated[Path, typer.Argument(help="Submission file.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="The test file it answers.")],
    labels: Annotated[int, typer.Option(help="Probabilities per line (17 in round 1).")] = 17,
) -> None:
    """Validate a submission: row count, ids in the test file's order, N floats in [0, 1], the `|,|` separator."""
    from meddx.evaluate.tianchi import check_submission as check

    problems = check(file, data, labels)
    for p in problems:
        typer.echo(f"{file}: {p}", err=True)
    if not problems:
        typer.echo(f"{file}: valid")
    raise typer.Exit(1 if problems else 0)


def main() -> None:
    """Entry point: meddx errors become one clear line on stderr and exit code 2."""
    try:
        app()
    except MeddxError as e:
        typer.echo(f"meddx: error: {e}", err=True)
        sys.exit(2)
