"""Make a subpackage callable, so `meddx.train(config)` works both before and after `import meddx.train`.

Python binds a subpackage to its parent's attribute once imported, which would shadow the API function of the
same name; the subpackage then forwards calls to that function in meddx.api.
"""

import importlib
import sys
import types


def make_callable(module_name: str, api_function: str) -> None:
    """Turn sys.modules[module_name] into a module whose call runs meddx.api.<api_function>."""

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module("meddx.api"), api_function)(*args, **kwargs)

    _CallablePackage.__call__.__doc__ = f"Same as meddx.api.{api_function}."
    sys.modules[module_name].__class__ = _CallablePackage
