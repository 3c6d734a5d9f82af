"""The package's shape: imports flow one way (upward never, no cycles), light modules stay light, the API has real
signatures."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "meddx"
# Lowest first: a module may import its own layer and the ones below, never one above.
LAYERS = [
    ("meddx.errors", "meddx.config", "meddx.logs", "meddx.atomic", "meddx.machine"),
    ("meddx.data",),
    ("meddx.models",),
    ("meddx.run",),
    ("meddx.training",),
    ("meddx.evaluation",),
    ("meddx.explain", "meddx.export"),
    ("meddx.tianchi",),
    ("meddx.serve",),
    ("meddx.api",),
    ("meddx.cli", "meddx.__main__", "meddx"),
]


def _layer(module: str) -> int:
    for level, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names if n != "meddx") or module in names:
            return level
    raise AssertionError(f"{module} is in no layer of LAYERS; add it")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every meddx module a file imports, at module level or inside functions (a lazy import is still an edge)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("meddx")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meddx") and node.level == 0:
            out.add(node.module)
    return out


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} (layer {_layer(m)}) imports {i} (layer {_layer(i)})"
        for m, targets in GRAPH.items()
        for i in targets
        if _layer(i) > _layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    def resolve(name: str) -> str | None:  # `from meddx.data import x` is an edge to meddx.data's __init__
        while name and name not in GRAPH:
            name = name.rpartition(".")[0]
        return name or None

    edges = {
        m: {r for t in ts if (r := resolve(t)) and r != m and not m.startswith(r + ".")} for m, ts in GRAPH.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in edges[m]:
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("meddx.evaluation.metrics", "torch"),
        ("meddx.data", "pytorch_lightning"),
        ("meddx.run", "pytorch_lightning"),
        ("meddx.tianchi", "pytorch_lightning"),
        ("meddx", "torch"),
        ("meddx", "numba"),
        ("meddx.evaluation.evaluation", "numba"),  # the bootstrap's kernel imports it when a bootstrap runs
    ],
)
def test_light_modules_stay_light(module, absent):
    code = f"import sys, {module}; print({absent!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", f"importing {module} imports {absent}"


def test_api_functions_have_real_signatures():
    import meddx

    assert list(inspect.signature(meddx.train).parameters) == ["config", "overrides"]
    assert "split" in inspect.signature(meddx.evaluate).parameters
    assert meddx.train.__doc__.startswith("Train and evaluate one run")
    assert not (PACKAGE / "_callable.py").exists()


def test_files_and_functions_stay_small():
    """No file in meddx/ over 300 lines, no function over 60 (docstring and decorators included)."""
    long_files, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 300:
            long_files.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - start + 1 > 60:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long_files and not long_functions, long_files + long_functions
