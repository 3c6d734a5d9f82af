"""`meddx runs`: every run and CV folder under a folder, with its state."""

import json
from pathlib import Path
from typing import Annotated

import typer

from meddx.errors import ConfigError


def runs(folder: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs")) -> None:
    """Every run folder under FOLDER with its state (complete, trained, running, interrupted, failed and why), so
    nobody evaluates a half run; `meddx train --resume RUN` continues an interrupted or failed one."""
    from datetime import datetime

    from meddx.run import CONFIG, STATUS, read_status
    from meddx.training.cv import CV

    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    cv_folder = lambda p: (p / CV).is_file() or any(p.glob("fold*/" + CONFIG))  # noqa: E731 - interrupted too
    found = sorted(p for p in folder.iterdir() if (p / CONFIG).is_file() or (p.is_dir() and cv_folder(p)))
    for path in found:
        if not (path / CONFIG).is_file():  # a `meddx cv` folder: its folds are runs of their own
            folds = sorted(f.parent for f in path.glob("fold*/" + CONFIG))
            total = json.loads((path / CV).read_text()).get("folds") if (path / CV).is_file() else None
            total = total or _fold_count(folds[0] / CONFIG)  # a CV killed before cv.json: its folds say
            done = sum(read_status(f).get("state") in ("trained", "complete") for f in folds)
            state = "cv" if (path / CV).is_file() and done == total else "cv, unfinished"
            when = datetime.fromtimestamp(max(f.stat().st_mtime for f in [path, *folds])).isoformat(timespec="seconds")
            more = "" if state == "cv" else "; `meddx cv` again resumes"
            typer.echo(f"{state:<12} {when:<20} {path} ({done} of {total} folds trained{more})")
            continue
        info, stamp = read_status(path), path / STATUS if (path / STATUS).is_file() else path / CONFIG
        since = info.get("since") or datetime.fromtimestamp(stamp.stat().st_mtime).isoformat(timespec="seconds")
        reason = f" ({info['reason']})" if info.get("reason") else ""
        typer.echo(f"{info['state']:<12} {since:<20} {path}{reason}{_recipe_and_result(path)}")
    if not found:
        typer.echo(f"no run folders in {folder}")


def _recipe_and_result(path: Path) -> str:
    """'  resnet18 64 px, from RUN; test ROC AUC 0.94; COLLAPSED' for a run folder: what tells runs apart in a list."""
    from meddx.errors import MeddxError
    from meddx.evaluation.training_summary import recipe_line
    from meddx.run import Run

    try:
        parts = [recipe_line(Run(path))]
    except (MeddxError, OSError, ValueError, KeyError):
        return ""
    try:
        metrics = json.loads((path / "metrics.json").read_text())
        auc = metrics["model"]["macro"]["roc_auc"]["value"]
        parts.append(f"test ROC AUC {auc:.3f}" if auc is not None else "test ROC AUC n/a")
        parts += ["COLLAPSED"] * bool(metrics.get("collapse", {}).get("evaluation", {}).get("collapsed"))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "  " + "; ".join(p for p in parts if p)


def _fold_count(config: Path) -> int | str:
    """The number of folds a fold's config names ('?' when it cannot be read)."""
    from meddx.config import load_config
    from meddx.errors import MeddxError

    try:
        return load_config(config).split.folds or "?"
    except MeddxError:
        return "?"


def register(app: typer.Typer) -> None:
    app.command()(runs)
