"""Reading, validating, overriding and saving a run's configuration (YAML in, YAML out)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from pydantic import ValidationError

from meddx.config.sections import RunConfig
from meddx.errors import ConfigError


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
    return validate_config(apply_overrides(raw, dotted))


def apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """Set dotted keys such as 'train.max_epochs' in a plain config dict, in place."""
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def validate_config(raw: dict | RunConfig, source: str = "config") -> RunConfig:
    """Validate a plain dict into a RunConfig with a readable error."""
    if isinstance(raw, RunConfig):
        return raw
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines)) from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the whole validated config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
