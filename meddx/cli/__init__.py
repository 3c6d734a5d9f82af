"""The `meddx` command: a thin layer over `meddx.api`, one module per group of commands; heavy imports happen inside
each command, so `meddx --help` stays fast."""

import errno
import sys

import typer

from meddx.cli import data, folders, models, runs, ship, tianchi
from meddx.errors import MeddxError
from meddx.logs import quiet_third_party

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Honest, explained, deployable medical diagnosis classifiers.",
)
for group in (runs, folders, data, ship, models, tianchi):
    group.register(app)


def error_line(error: MeddxError) -> str:
    """How the command line reports a meddx error: one line on stderr (with exit code 2)."""
    return f"meddx: error: {error}"


def main() -> None:
    """Entry point: meddx errors become one clear line on stderr and exit code 2."""
    quiet_third_party()
    try:
        app()
    except MeddxError as e:
        typer.echo(error_line(e), err=True)
        sys.exit(2)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        target = e.filename2 or e.filename  # a staged file's rename names the real destination second
        where = f" writing {target}" if target else ""
        typer.echo(f"meddx: error: {e.strerror or e}{where}; nothing half-written was kept: free space or choose "
                   "another --output-dir, then resume with --resume", err=True)  # fmt: skip
        sys.exit(2)
