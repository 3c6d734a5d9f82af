"""Training on PyTorch Lightning: `fit(config) -> Run`, `load_run(path)`."""

from meddx.train.run import Run, fit, load_run

__all__ = ["Run", "fit", "load_run"]
