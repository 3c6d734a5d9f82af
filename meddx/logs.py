"""Third-party noise kept off the user's terminal: known library warnings and tips go to the run's meddx.log
(nowhere when no run folder is open); meddx's own warnings and every other warning still show."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NOISE = (  # messages a user can do nothing about
    r"isinstance\(treespec, LeafSpec\)",  # Lightning's _pytree deprecation under torch 2.14
    r"No (positive|negative) samples in targets",  # torchmetrics on a val batch of one class
    r"litlogger",  # Lightning's advertisement for its cloud logger
    r"\[torch\.onnx\]",  # the ONNX exporter's step log
    r"'set_vital' is deprecated",  # torchdata's StatefulDataLoader calling a torch API torch 2.14 deprecates
    r"Experiment logs directory .* exists and is not empty",  # a resumed run: meddx puts the earlier epochs back
    r"Checkpoint directory .* exists and is not empty",  # a resumed run: its own checkpoints, continued
    r"smaller than the logging interval",  # small folds: fewer batches than log_every_n_steps
)
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric")
LOG = logging.getLogger("meddx.thirdparty")
LOG.propagate = False
LOG.setLevel(logging.INFO)
_ORIGINAL_SHOWWARNING = warnings.showwarning


def is_noise(text: str) -> bool:
    return any(re.search(p, text) for p in NOISE)


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    if is_noise(str(message)):
        LOG.info("%s:%s: %s: %s", filename, lineno, category.__name__, message)
    elif category.__name__ == "MeddxWarning":  # meddx's own: one line, as the CLI's other warnings read
        print(f"WARNING: {message}", file=file or sys.stderr, flush=True)
    else:
        _ORIGINAL_SHOWWARNING(message, category, filename, lineno, file, line)


class _Divert(logging.Filter):
    """On a library's terminal handler: noise records go to the run's log instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if is_noise(record.getMessage()):
            LOG.handle(record)
            return False
        return True


def quiet_third_party() -> None:
    """Divert known noise (idempotent): warnings through `warnings.showwarning`, Lightning's info lines through a
    filter on its terminal handlers (call after Lightning is imported)."""
    warnings.showwarning = _showwarning
    for name in LIGHTNING_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _Divert) for f in handler.filters):
                handler.addFilter(_Divert())


def progress(items: Sequence[T], description: str, least: int = 500) -> Iterable[T]:
    """`items` with a progress bar on the terminal (rich) when there are at least `least` of them and stderr is a
    terminal; otherwise `items` unchanged (logs, CI, notebooks stay clean)."""
    if len(items) < least or not sys.stderr.isatty():
        return items
    from rich.progress import track

    return track(items, description=description, transient=True, console=_console())


def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def run_log(folder: str | Path) -> Iterator[Path]:
    """While open, diverted noise is appended to <folder>/meddx.log."""
    path = Path(folder) / "meddx.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    LOG.addHandler(handler)
    try:
        yield path
    finally:
        LOG.removeHandler(handler)
        handler.close()


def terminal():
    """A rich console for stdout: the terminal's width, or 160 columns when piped or logged (rich's 80 would cut
    tables' numbers short with an ellipsis)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)
