"""Option groups shared by several commands, defined once: the data options (help texts from DataConfig's fields),
`--set`, and how they become dotted config overrides."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Optional

import typer
import yaml

from meddx.config import DataConfig
from meddx.errors import MeddxError


def _help(field: str) -> str:
    return DataConfig.model_fields[field].description or ""


# parameter name -> (type with its option, data-config field)
DATA_PANEL = "Data (the config's data section)"


def _opt(*names: str, text: str) -> typer.models.OptionInfo:
    return typer.Option(*names, rich_help_panel=DATA_PANEL, help=text)


# parameter name -> (type with its option, data-config field)
DATA_OPTIONS = {
    "data": (
        Annotated[
            Optional[list[str]],
            _opt(
                "--data",
                "-d",
                text=_help("path").replace("a {split: csv} mapping keeps", "repeat as split=file.csv to keep"),
            ),
        ],
        "path",
    ),
    "root": (Annotated[Optional[str], _opt(text=_help("root"))], "root"),
    "fmt": (Annotated[Optional[str], _opt("--format", text="auto, csv, folder, medmnist or tianchi.")], "format"),
    "image_column": (Annotated[Optional[str], _opt(text="Image path column of a CSV.")], "image_column"),
    "patient_column": (Annotated[Optional[str], _opt(text="Patient id column of a CSV.")], "patient_column"),
    "patient_regex": (Annotated[Optional[str], _opt(text=_help("patient_regex"))], "patient_regex"),
    "label_column": (Annotated[Optional[str], _opt(text=_help("label_column"))], "label_column"),
    "label_columns": (Annotated[Optional[str], _opt(text="Comma-separated 0/1 label columns.")], "label_columns"),
    "positive_class": (Annotated[Optional[str], _opt(text=_help("positive_class"))], "positive_class"),
    "views": (Annotated[Optional[str], _opt(text="Slice/projection indices used as channels, e.g. 0,60.")], "views"),
    "skip_unreadable": (
        Annotated[Optional[bool], _opt("--skip-unreadable", text=_help("skip_unreadable"))],
        "skip_unreadable",
    ),
    "allow_outside_root": (
        Annotated[
            Optional[bool], _opt("--allow-outside-root", text="Let a CSV name images by absolute or '..' paths.")
        ],
        "allow_outside_root",
    ),
}
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Any config field as dotted.key=value (YAML value).")
]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML run config.")]


def data_overrides(values: dict) -> dict:
    """The data options a user gave, as dotted config overrides ('data.path', 'data.views', ...)."""
    out: dict = {}
    data = values.pop("data", None)
    if data:
        if all("=" in d for d in data):
            out["data.path"] = dict(d.split("=", 1) for d in data)
        elif len(data) == 1:
            out["data.path"] = data[0]
        else:
            raise MeddxError("give one --data path, or several as split=file.csv")
    for name, value in values.items():
        if value is None:
            continue
        key = DATA_OPTIONS[name][1]
        if key == "label_columns":
            value = [c.strip() for c in value.split(",")]
        elif key == "views":
            try:
                value = [int(v) for v in value.split(",")]
            except ValueError:
                raise MeddxError(f"--views must be comma-separated integers, got {value!r}") from None
        out[f"data.{key}"] = value
    return out


def set_overrides(pairs: list[str] | None) -> dict:
    """`--set dotted.key=value` pairs as overrides (values parsed as YAML)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise MeddxError(f"--set expects dotted.key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def with_data_options(*names: str):
    """Add the named data options to a command; it receives them as `data_overrides` (a dict of dotted keys)."""

    def decorate(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "data_overrides"]
        added = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DATA_OPTIONS[n][0])
            for n in names
        ]

        @functools.wraps(fn)
        def command(**kwargs):
            given = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, data_overrides=data_overrides(given))

        command.__signature__ = sig.replace(parameters=[*own, *added])
        return command

    return decorate


def budget_minutes(text: str | None) -> float | None:
    """'15m', '900s', '1.5h' or plain minutes ('20') as minutes."""
    if text is None:
        return None
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    value, unit = (text[:-1], text[-1].lower()) if text[-1:].lower() in units else (text, "m")
    try:
        minutes = float(value) * units[unit]
    except ValueError:
        raise MeddxError(f"--budget {text!r}: expected minutes such as 15m, 900s or 1h") from None
    if minutes <= 0:
        raise MeddxError(f"--budget {text!r}: must be more than 0")
    return minutes


BudgetOpt = Annotated[
    Optional[str], typer.Option(help="Time for training every planned model: 15m (default), 900s, 1h.")
]


def given(**values) -> dict:
    """The options a user gave (None means not given), keyed as the caller names them."""
    return {k: v for k, v in values.items() if v is not None}


def depth_value(depth: str | None) -> int | str | None:
    """'all' stays a string, digits become an int (validated by the config)."""
    return int(depth) if depth is not None and depth.strip().isdigit() else depth


ALL_DATA = tuple(n for n in DATA_OPTIONS if n != "views")
