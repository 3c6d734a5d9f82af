"""Reading, validating, overriding and saving a run's configuration (YAML in, YAML out)."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from meddx.atomic import write_text
from meddx.config.sections import DataConfig, RunConfig
from meddx.errors import ConfigError

S = TypeVar("S", bound=BaseModel)

RUNTIME = {
    "accelerator",
    "devices",
    "num_nodes",
    "num_workers",
    "pin_memory",
    "progress_bar",
    "checkpoint_minutes",
    "diagnostics",
    "compile",
    "channels_last",
}  # train fields that say where and how fast a run (or a fold) runs, not what it learns


def paths_resolved(data: dict) -> dict:
    """A dumped data section with its file fields (path, root, vocab) absolute: `--data scans` and the absolute path a
    run saved name one folder."""
    return {k: str(Path(v).resolve()) if k in ("path", "root", "vocab") and isinstance(v, str) else v
            for k, v in data.items()}  # fmt: skip


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a YAML config (or defaults) and apply dotted overrides such as {'train.max_epochs': 3}."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    apply_overrides(raw, overrides)
    return validate_config(raw, source=str(path) if path else "config")


def as_config(config: RunConfig | dict | str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """A validated RunConfig from a RunConfig, a plain dict, a YAML path or nothing (defaults), with overrides applied:
    dotted keys ('train.max_epochs') or keyword style ('train__max_epochs'). Never changes the caller's object."""
    dotted = {k.replace("__", "."): v for k, v in (overrides or {}).items()}
    if config is None or isinstance(config, (str, Path)):
        return load_config(config, dotted)
    raw = config.model_dump(mode="json") if isinstance(config, RunConfig) else copy.deepcopy(config)
    out = validate_config(apply_overrides(raw, dotted))
    if isinstance(config, RunConfig):  # what the user set stays theirs and the rest the plan's (not all set)
        _keep_set(out, config, dotted)
    return out


def _keep_set(new: BaseModel, old: BaseModel | None, dotted: dict) -> None:
    """Mark in `new` the fields set in `old` and those the `dotted` overrides set, section by section; a section given
    whole (a dict) replaced the old one, so only its own keys are set."""
    fields = set(old.model_fields_set if old is not None else ()) | {k.split(".")[0] for k in dotted}
    for name in type(new).model_fields:
        child = getattr(new, name)
        if not isinstance(child, BaseModel):
            continue
        inner = {k.split(".", 1)[1]: v for k, v in dotted.items() if k.startswith(f"{name}.")}
        whole = dotted.get(name)
        was = getattr(old, name, None) if old is not None else None
        if isinstance(whole, dict):
            was, inner = None, {**_dotted(whole), **inner}
        _keep_set(child, was if type(was) is type(child) else None, inner)
        if child.model_fields_set:  # a field assigned inside a section the constructor never saw
            fields.add(name)
    new.__pydantic_fields_set__ = fields


def _dotted(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} as {'a.b': 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """Set dotted keys such as 'train.max_epochs' in a plain config dict, in place."""
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def _did_you_mean(model: type[BaseModel], loc: tuple) -> str:
    """For an unknown key, the closest field names of the section it sits in."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def describe(e: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per problem: the dotted field, what is wrong, the value given (and a did-you-mean for unknown keys)."""
    lines = []
    for err in e.errors():
        where = prefix + ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key{_did_you_mean(model, err['loc'])}")
        else:
            lines.append(f"{where}: {msg} (given: {err['input']!r})")
    return lines


def validate_section(model: type[S], raw: dict, prefix: str) -> S:
    """A config section from a dict, or a ConfigError naming each bad field (`prefix`: its place, e.g. 'evaluate.')."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError("; ".join(describe(e, model, prefix))) from None


def validate_config(raw: dict | RunConfig, source: str = "config") -> RunConfig:
    """Validate a plain dict into a RunConfig with a readable error."""
    if isinstance(raw, RunConfig):
        return raw
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"  {line}" for line in describe(e, RunConfig)]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines)) from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the whole validated config as YAML, with paths to existing files and folders made absolute, so the run
    folder is read the same from any working directory (export, serve, evaluate)."""
    raw = config.model_dump(mode="json")
    data = raw["data"]
    if isinstance(data["path"], dict):
        data["path"] = {split: _absolute(p) for split, p in data["path"].items()}
    else:
        data["path"] = _absolute(data["path"])
    data["root"] = _absolute(data["root"])
    raw["model"]["weights"] = _absolute(raw["model"]["weights"])
    raw["train"]["init_from"] = _absolute(raw["train"]["init_from"])
    write_text(path, yaml.safe_dump(raw, sort_keys=False))


def _absolute(path: str | None) -> str | None:
    """An existing relative path as an absolute one; anything else (a bundled set's name, None) unchanged."""
    return str(Path(path).resolve()) if path and not Path(path).is_absolute() and Path(path).exists() else path


def data_name(data: DataConfig) -> str:
    """The data's name for a folder: the main path's stem ('.' named by its folder), safe characters only."""
    path = Path(data.main_path)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem or path.resolve().name) or "data"
