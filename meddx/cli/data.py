"""Commands on data: explore, check-leakage."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from meddx.cli.options import ALL_DATA, SetOpt, set_overrides, with_data_options

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="Take the data (and split) sections of a run config.")
]


@with_data_options(*ALL_DATA)
def explore(
    config: ConfigOpt = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Folder for explore.json and explore.md.")
    ] = None,
    no_images: Annotated[bool, typer.Option("--no-images", help="Skip opening files (sizes, hashes).")] = False,
    set_: SetOpt = None,
    data_overrides: dict | None = None,
) -> None:
    """Summarise a data set: rows, patients, labels, missing/unreadable files, sizes, duplicates."""
    from meddx.api import explore as api_explore
    from meddx.config import load_config
    from meddx.data.explore import summary_table, to_markdown, write_explore
    from meddx.logs import terminal

    cfg = load_config(config, {**data_overrides, **set_overrides(set_)})
    summary = api_explore(cfg.data, read_images=not no_images)
    console = terminal()
    console.print(summary_table(summary))
    for line in to_markdown(summary).splitlines():
        if line.startswith("- "):
            console.print(line, markup=False, highlight=False)
    if output:
        j, m = write_explore(summary, output)
        console.print(f"wrote {j} and {m}")


@with_data_options(*ALL_DATA)
def check_leakage(config: ConfigOpt = None, set_: SetOpt = None, data_overrides: dict | None = None) -> None:
    """Split as training would and fail (exit 1) when a patient or image sits on two sides."""
    from meddx.api import leakage
    from meddx.config import load_config

    cfg = load_config(config, {**data_overrides, **set_overrides(set_)})
    report = leakage(cfg.data, cfg.split)
    typer.echo(report.summary())
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.command()(explore)
    app.command("check-leakage")(check_leakage)
