"""meddx: honest, explained, deployable medical diagnosis classifiers.

import meddx
run = meddx.train({"data": {"path": "pneumoniamnist"}})   # train + evaluate; returns a Run
meddx.print_summary(run)                                  # the table and warnings `meddx train` prints
run.predict(["scan.png"])
meddx.load_run("runs/...").predictions("test")
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "train": "meddx.api",
    "evaluate": "meddx.api",
    "explore": "meddx.api",
    "leakage": "meddx.api",
    "predict": "meddx.api",
    "plan": "meddx.api",
    "pretrain": "meddx.api",
    "cross_validate": "meddx.api",
    "submit": "meddx.api",
    "ensemble": "meddx.api",
    "compare": "meddx.api",
    "model_info": "meddx.api",
    "resume": "meddx.api",
    "print_summary": "meddx.evaluation.summary",
    "load_run": "meddx.run",
    "Run": "meddx.run",
    "RunConfig": "meddx.config",
    "load_config": "meddx.config",
    "create_model": "meddx.models",
    "list_models": "meddx.models",
    "load_pneumoniamnist": "meddx.data",
    "read_dataset": "meddx.data",
    "check_leakage": "meddx.data",
    "export_run": "meddx.export",
    "explain_file": "meddx.explain",
    "gallery": "meddx.explain",
    "create_app": "meddx.serve",
}


def __getattr__(name: str):
    """Import the heavy parts (torch, Lightning) only when first used."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'meddx' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = sorted(_API)
