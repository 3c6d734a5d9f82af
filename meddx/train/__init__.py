"""Training on PyTorch Lightning: `fit(config) -> Run`, `load_run(path)`; `meddx.train(config)` also trains + evaluates."""

from meddx._callable import make_callable
from meddx.train.run import Run, fit, load_run

__all__ = ["Run", "fit", "load_run"]
make_callable(__name__, "train")
