"""Validated run configuration: one pydantic model per run (`sections`), loadable from YAML and saved in the run folder
(`files`)."""

from meddx.config.files import (
    RUNTIME,
    apply_overrides,
    as_config,
    data_name,
    load_config,
    paths_resolved,
    save_config,
    validate_config,
    validate_section,
)
from meddx.config.pretrain import PretrainConfig
from meddx.config.sections import (
    AugmentConfig,
    DataConfig,
    EvaluateConfig,
    ModelConfig,
    PlanConfig,
    RunConfig,
    SplitConfig,
    TrainConfig,
)
from meddx.config.tricks import PseudoLabelConfig, TricksConfig

__all__ = [
    "RUNTIME",
    "AugmentConfig",
    "DataConfig",
    "EvaluateConfig",
    "ModelConfig",
    "PlanConfig",
    "PretrainConfig",
    "PseudoLabelConfig",
    "RunConfig",
    "SplitConfig",
    "TrainConfig",
    "TricksConfig",
    "apply_overrides",
    "data_name",
    "as_config",
    "load_config",
    "paths_resolved",
    "save_config",
    "validate_config",
    "validate_section",
]
