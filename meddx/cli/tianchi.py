"""The Tianchi competition's commands as one sub-app, `meddx tianchi submit|check|blend`; `meddx submit` and
`meddx check-submission` stay as aliases."""

from pathlib import Path
from typing import Annotated, Optional

import typer

SourcesArg = Annotated[
    list[Path], typer.Argument(help="Run folder(s), or `meddx cv` folders (fold ensembles); several are blended.")
]
TestOpt = Annotated[Path, typer.Option("--data", "-d", help="The competition test file (report_ID|,|description).")]


def submit(
    runs: SourcesArg,
    data: TestOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission file.")] = Path("submission.csv"),
    weights: Annotated[
        str,
        typer.Option(
            help="Blend of several folders: equal, or oof (greedy selection on their "
            "out-of-fold predictions; cv folders only)."
        ),
    ] = "equal",
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Platt-scale the blend, slopes fitted on its out-of-fold predictions (cv folders; off by default).",
        ),
    ] = False,
) -> None:
    """Write a Tianchi submission: `report_ID|,|p0 ... p16` (round 2: p0 ... p28), one line per test row in order
    (checked)."""
    from meddx.tianchi import blend_weights
    from meddx.tianchi import submit as write

    chosen: str | list[float] = weights
    if weights == "oof":
        chosen = blend_weights([str(r) for r in runs])
        typer.echo("weights chosen out of fold: " + ", ".join(f"{r} {w:.2f}" for r, w in zip(runs, chosen)))
    if calibrate:
        typer.echo(
            "probabilities Platt-scaled with slopes fitted out of fold (--no-calibrate: as the models gave them)"
        )
    typer.echo(f"wrote {write([str(r) for r in runs], data, output, chosen, calibrate)}")
    if _labelled(data):
        typer.echo(f"WARNING: {data} holds labels (report_ID|,|tokens|,|label): a submission answers the unlabelled "
                   "test file; `meddx evaluate RUN --data FILE` scores labelled reports", err=True)  # fmt: skip


def _labelled(path: Path) -> bool:
    """Whether a `|,|` file's first line has a label field."""
    from meddx.data.reports import SEP

    with open(path, encoding="utf-8", errors="replace") as f:
        return next((line.count(SEP) == 2 for line in f if line.strip()), False)


def check(
    file: Annotated[Path, typer.Argument(help="Submission file.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="The test file it answers.")],
    labels: Annotated[
        Optional[int], typer.Option(help="Probabilities per line; default: read from the first line (17 or 29).")
    ] = None,
) -> None:
    """Validate a submission: row count, ids in the test file's order, 17 (round 1) or 29 (round 2) floats in [0, 1]
    per line, the `|,|` separator."""
    from meddx.tianchi import ROUND_LABELS, check_submission, infer_labels

    problems = check_submission(file, data, labels)
    for p in problems:
        typer.echo(f"{file}: {p}", err=True)
    if not problems:
        lines = [ln for ln in file.read_text().splitlines() if ln.strip()]
        typer.echo(f"{file}: valid, {ROUND_LABELS.get(labels or infer_labels(lines), f'{labels} labels')}")
    raise typer.Exit(1 if problems else 0)


def blend(cv_folders: Annotated[list[Path], typer.Argument(help="`meddx cv` folders of the same data.")]) -> None:
    """Weights for blending CV folders, chosen by greedy selection on their out-of-fold predictions, and the blended
    out-of-fold mlogloss beside each folder's own."""
    from meddx.tianchi import blend_oof

    out = blend_oof([str(f) for f in cv_folders])
    for f, w, own in zip(cv_folders, out["weights"], out["folders"]):
        typer.echo(f"{f}: weight {w:.2f}, out-of-fold mlogloss {own['mlogloss']:.4f}, score {own['score']:.4f}")
    b, c = out["blend"], out["calibrated"]
    typer.echo(f"blend: out-of-fold mlogloss {b['mlogloss']:.4f}, score {b['score']:.4f} (weights chosen on them)")
    slopes = ", ".join(f"slope {a:.2f} intercept {i:+.2f}" for a, i in out["platt"])
    if c is None:
        typer.echo(f"blend, Platt-scaled ({slopes}): needs 2 or more folds to be scored out of fold")
        return
    typer.echo(
        f"blend, Platt-scaled ({slopes}; cross-fitted: each fold scaled by the other folds' fit): out-of-fold mlogloss "
        f"{c['mlogloss']:.4f}, score {c['score']:.4f} (use: meddx tianchi submit ... --weights oof --calibrate)"
    )


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="The Tianchi 2021 report competition: submissions and blends.")
    sub.command()(submit)
    sub.command()(check)
    sub.command()(blend)
    app.add_typer(sub, name="tianchi")
    app.command("submit", help="Alias of `meddx tianchi submit`.")(submit)
    app.command("check-submission", help="Alias of `meddx tianchi check`.")(check)
