"""One registry over our own small models and timm backbones; weights only from a local file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from meddx.errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of meddx needs to know about a registered model."""

    name: str
    builder: Callable[..., nn.Module]
    min_size: int
    description: str
    kind: str = "image"  # "image" (in_chans, H, W) or "sequence" (token indices; needs vocab_size, max_len)


MODEL_INFO: dict[str, ModelInfo] = {}
TIMM_RECOMMENDED = {
    "resnet18": (32, "timm ResNet-18"),
    "resnet50": (32, "timm ResNet-50"),
    "densenet121": (32, "timm DenseNet-121 (CheXNet's backbone)"),
    "efficientnet_b0": (32, "timm EfficientNet-B0"),
}


def register_model(name: str, min_size: int = 1, description: str = "", kind: str = "image") -> Callable:
    """Decorator: register a builder `f(in_chans, num_classes, **kw) -> nn.Module` under `name`."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODEL_INFO[name] = ModelInfo(name, builder, min_size, description or (builder.__doc__ or "").strip(), kind)
        return builder

    return wrap


def _timm_builder(name: str) -> Callable[..., nn.Module]:
    def build(in_chans: int, num_classes: int, dropout: float = 0.0, **kw) -> nn.Module:
        import timm

        return timm.create_model(
            name, pretrained=False, in_chans=in_chans, num_classes=num_classes, drop_rate=dropout, **kw
        )

    return build


for _name, (_size, _desc) in TIMM_RECOMMENDED.items():
    register_model(_name, _size, _desc)(_timm_builder(_name))


def list_models(include_timm: bool = False) -> list[str]:
    """Registered names; with include_timm, every architecture timm can build as well."""
    names = sorted(MODEL_INFO)
    if include_timm:
        import timm

        names += [n for n in timm.list_models() if n not in MODEL_INFO]
    return names


def min_input_size(name: str) -> int:
    """Smallest image side the architecture accepts (e.g. 32 for DenseNet)."""
    return MODEL_INFO[name].min_size if name in MODEL_INFO else 32


def create_model(name: str, in_chans: int, num_classes: int, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered (or any timm) model; `weights` is a local state-dict file, never a download."""
    if name in MODEL_INFO:
        try:
            model = MODEL_INFO[name].builder(in_chans=in_chans, num_classes=num_classes, **kwargs)
        except TypeError as e:
            raise ConfigError(
                f"model '{name}' ({MODEL_INFO[name].kind}): bad arguments {sorted(kwargs)}: {e}"
            ) from None
    else:
        import timm

        if not timm.is_model(name):
            raise ConfigError(f"unknown model '{name}'; registered: {', '.join(list_models())} (or any timm name)")
        model = _timm_builder(name)(in_chans=in_chans, num_classes=num_classes, **kwargs)
    if weights is not None:
        loader = getattr(model, "load_pretrained", None)  # models with a pretrained encoder and a new head
        loader(weights) if loader else load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict (or a Lightning checkpoint's) strictly, naming any mismatched tensor."""
    from meddx.models.state_files import read_state_dict

    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        raise ConfigError(
            f"{path}: weights do not fit the model; missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape {wrong[:5]}"
        )
    model.load_state_dict(state)
