"""Training on PyTorch Lightning: `fit(config) -> Run`, `load_run(path)`.

`meddx.train` is both this package and the API function `meddx.train(config)`: Python binds the package to the
name once it is imported, so the package itself is made callable and forwards to `meddx.api.train`.
"""

import sys
import types

from meddx.train.run import Run, fit, load_run

__all__ = ["Run", "fit", "load_run"]


class _CallablePackage(types.ModuleType):
    def __call__(self, config=None, **overrides):
        """Train and evaluate one run (see `meddx.api.train`)."""
        from meddx.api import train

        return train(config, **overrides)


sys.modules[__name__].__class__ = _CallablePackage
