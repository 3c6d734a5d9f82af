"""Transfer learning for any nn.Module: find the head and the blocks, load pretrained weights without the head,
freeze all but the last N blocks.

Rules (documented in docs/architecture.md):
- **Head**: timm's `get_classifier()` if the model has it, else the first of the attributes `head`, `classifier`,
  `fc` that is a module with parameters.
- **Blocks**: if the model has a timm-style `feature_info` (a list of dicts with a `module` name; timm models and our
  small CNNs), block i holds every non-head parameter registered after block i-1's module and up to the end of
  `feature_info[i]['module']` (so a ResNet's stem conv/bn join `act1`); parameters registered after the last feature
  module (EfficientNet's `conv_head`, `bn2`) form one more block. Otherwise, every top-level child with parameters
  other than the head is a block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from meddx.errors import ConfigError
from meddx.models.state_files import read_state_dict, source_model

HEAD_ATTRIBUTES = ("head", "classifier", "fc")


@dataclass
class Block:
    """A named group of parameters; the head is a Block too (is_head=True)."""

    name: str
    params: list[str]
    num_params: int
    is_head: bool = False


def head_name(model: nn.Module) -> str:
    """The module name of the head (see the module docstring for the rule)."""
    candidates = []
    if hasattr(model, "get_classifier"):
        candidates.append(model.get_classifier())
    candidates += [getattr(model, a) for a in HEAD_ATTRIBUTES if isinstance(getattr(model, a, None), nn.Module)]
    names = {id(m): n for n, m in model.named_modules()}
    for c in candidates:
        if isinstance(c, nn.Module) and id(c) in names and any(True for _ in c.parameters()):
            return names[id(c)]
    raise ConfigError(
        f"{type(model).__name__}: no head found (expected get_classifier() or an attribute "
        f"{', '.join(HEAD_ATTRIBUTES)} with parameters)"
    )


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def blocks(model: nn.Module) -> list[Block]:
    """Backbone blocks in forward order, then the head as the last entry."""
    head = head_name(model)
    params = [(n, p) for n, p in model.named_parameters()]
    owner = {n: n.rpartition(".")[0] for n, _ in params}
    body = [(n, p) for n, p in params if not _under(owner[n], head)]
    groups: list[tuple[str, list[tuple[str, torch.nn.Parameter]]]] = []
    info = getattr(model, "feature_info", None)
    modules = [m["module"] for m in info] if isinstance(info, list) and info and isinstance(info[0], dict) else None
    if modules:
        order = [n for n, _ in model.named_modules()]
        pos = {n: i for i, n in enumerate(order)}
        ends = [max(i for i, n in enumerate(order) if _under(n, m)) for m in modules]
        per: dict[int, list] = {}
        for n, p in body:
            q = pos[owner[n]]
            per.setdefault(next((i for i, e in enumerate(ends) if q <= e), len(ends)), []).append((n, p))
        for i in sorted(per):
            label = modules[i] if i < len(modules) else "+".join(dict.fromkeys(n.split(".")[0] for n, _ in per[i]))
            groups.append((label, per[i]))
    else:
        for child, _module in model.named_children():
            ps = [(n, p) for n, p in body if _under(n, child)]
            if ps:
                groups.append((child, ps))
    out = [Block(name, [n for n, _ in ps], sum(p.numel() for _, p in ps)) for name, ps in groups]
    head_params = [(n, p) for n, p in params if _under(owner[n], head)]
    out.append(Block(head, [n for n, _ in head_params], sum(p.numel() for _, p in head_params), is_head=True))
    return out


def parse_depth(depth: int | str) -> int | None:
    """'all' -> None (everything trainable); an int >= 0 -> that many backbone blocks plus the head."""
    if depth is None or str(depth).lower() == "all":
        return None
    try:
        n = int(depth)
    except (TypeError, ValueError):
        raise ConfigError(f"finetune depth must be an integer >= 0 or 'all', got {depth!r}") from None
    if n < 0:
        raise ConfigError(f"finetune depth must be >= 0 or 'all', got {n}")
    return n


def trainable_blocks(model: nn.Module, depth: int | str) -> list[Block]:
    """The blocks that stay trainable at this depth: the last N backbone blocks and the head."""
    bs = blocks(model)
    n = parse_depth(depth)
    backbone, head = bs[:-1], bs[-1]
    if n is None or n >= len(backbone):
        return bs
    return (backbone[len(backbone) - n :] if n else []) + [head]


def check_depth(model: nn.Module | None, depth: int | str, name: str, loaded: bool) -> None:
    """A ConfigError for a depth that keeps random blocks frozen (nothing was loaded into them) or that asks for more
    blocks than the model has; nothing to check at 'all'. Without a model (before one is built), only depth 0."""
    n = parse_depth(depth)
    if n is None or (model is None and n):
        return
    try:
        backbone = len(blocks(model)) - 1 if model is not None else 1
    except ValueError as e:
        raise ConfigError(f"train.finetune_depth {n}: the blocks of {name} cannot be told apart ({e})") from None
    if n > backbone:
        raise ConfigError(f"train.finetune_depth {n}: {name} has {backbone} backbone blocks (meddx model-info {name})")
    if n < backbone and not loaded:
        kept = "only the head would learn" if n == 0 else f"its first {backbone - n} block(s) would stay random"
        raise ConfigError(
            f"train.finetune_depth {n} freezes part of {name}, but no weights were loaded into it (train.init_from, "
            f"model.weights or model.embeddings): {kept}; give --init-from, or leave it at 'all'"
        )


def loads_weights(cfg) -> bool:
    """Whether a run config loads weights into its model: a run or file (train.init_from), a pretrained encoder
    (model.weights) or word vectors (model.embeddings)."""
    return bool(cfg.train.init_from or cfg.model.weights or cfg.model.embeddings)


def freeze_all_but(model: nn.Module, depth: int | str) -> list[str]:
    """Set requires_grad so only the last `depth` blocks and the head train; returns the trainable parameter names."""
    keep = {n for b in trainable_blocks(model, depth) for n in b.params}
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return [n for n, _ in model.named_parameters() if n in keep]


def set_batchnorm_modes(model: nn.Module) -> None:
    """During training: BatchNorm layers whose parameters are all frozen go to eval mode (their running statistics
    stay those of the pretrained model), the others to train mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps:
                m.train(any(p.requires_grad for p in ps))


def _adapt_channels(weight: torch.Tensor, channels: int, adapt_input_conv) -> torch.Tensor:
    """A first conv's weights for another input channel count: timm's rule (3 -> 1 sums, 3 -> N repeats), and a
    one-channel (grey) filter spread evenly over N channels, which timm does not do."""
    if weight.shape[1] == 1 and channels > 1:
        return weight.repeat(1, channels, 1, 1) / channels
    return adapt_input_conv(channels, weight)


def load_pretrained(model: nn.Module, source: str | Path) -> dict:
    """Load every tensor but the head's (which stays freshly initialised); any other missing or mismatched tensor is
    a ConfigError naming it. A first conv with another channel count is adapted by timm's `adapt_input_conv`."""
    from timm.models import adapt_input_conv

    state = read_state_dict(source)
    head = head_name(model)
    own = model.state_dict()
    in_head = lambda k: _under(k.rpartition(".")[0], head)  # noqa: E731
    first_conv = next((n for n, p in model.named_parameters() if p.dim() == 4), None)
    loaded, adapted = {}, []
    missing = [k for k in own if k not in state and not in_head(k) and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not in_head(k)]
    wrong = []
    for k, v in state.items():
        if k not in own or in_head(k):
            continue
        if v.shape != own[k].shape:
            if k == first_conv and v.shape[0] == own[k].shape[0] and v.shape[2:] == own[k].shape[2:]:
                v = _adapt_channels(v, own[k].shape[1], adapt_input_conv)
                adapted.append(f"{k}: {state[k].shape[1]} -> {own[k].shape[1]} channels")
            else:
                wrong.append(f"{k} {tuple(v.shape)} in the file vs {tuple(own[k].shape)} in the model")
                continue
        loaded[k] = v
    if missing or unexpected or wrong:
        parts = [
            f"{name}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for name, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected))
            if items
        ]
        arch = source_model(source)
        fits = [arch] if arch else fitting_models(state)  # a model whose names and shapes both fit
        made = f" (made for {fits[0]}: give --model {fits[0]})" if len(fits) == 1 else ""
        fit = f"weights do not fit the model outside its head '{head}'"
        raise ConfigError(f"{source}{made}: {fit}; " + "; ".join(parts))
    model.load_state_dict(loaded, strict=False)
    skipped = [k for k in state if in_head(k)]
    made = source_model(source)  # recorded, so the report can say what kind of encoder the run started from
    return {"loaded": len(loaded), "skipped_head": skipped, "adapted": adapted, **({"model": made} if made else {})}


def describe(model: nn.Module, depth: int | str | None = None) -> list[dict]:
    """One row per block (index counted from the end, name, parameters, trainable at `depth`)."""
    bs = blocks(model)
    keep = {b.name for b in trainable_blocks(model, depth)} if depth is not None else None
    n_back = len(bs) - 1
    return [
        {
            "block": "head" if b.is_head else str(n_back - i),
            "name": b.name,
            "params": b.num_params,
            **({"trainable": b.name in keep} if keep is not None else {}),
        }
        for i, b in enumerate(bs)
    ]


def blocks_table(rows: list[dict], depth: int | str | None = None) -> str:
    """`describe`'s rows as the text table `meddx model-info` prints (a trainable column when a depth is given)."""
    lines = [f"{'block':>6}  {'module':32s} {'parameters':>12}" + ("  trainable" if depth is not None else "")]
    for r in rows:
        flag = ("  yes" if r["trainable"] else "  no") if depth is not None else ""
        lines.append(f"{r['block']:>6}  {r['name']:32s} {r['params']:>12,}{flag}")
    total = sum(r["params"] for r in rows)
    trainable = sum(r["params"] for r in rows if r.get("trainable", True))
    lines.append(
        f"total {total:,} parameters" + (f"; {trainable:,} trainable at depth {depth}" if depth is not None else "")
    )
    return "\n".join(lines)


def replace_head(model: nn.Module, replacement: nn.Module | None = None) -> nn.Module:
    """The model with its head swapped (default: `nn.Flatten()`, so it returns its pooled features), in place."""
    parent_name, _, child = head_name(model).rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, replacement if replacement is not None else nn.Flatten())
    return model


def fitting_models(state: dict[str, torch.Tensor]) -> list[str]:
    """The registered image models whose tensors outside the head match a state dict's in name and
    shape (the first conv's input channels may differ: they are adapted): what a file of unknown origin was made for
    (a torchvision ResNet-18 fits resnet18)."""
    from meddx.models.registry import MODEL_INFO, create_model

    names = []
    for name, info in MODEL_INFO.items():
        if info.kind != "image":
            continue
        model = create_model(name, 1, 1)
        head, own = head_name(model), model.state_dict()
        body = {k: v for k, v in own.items() if not _under(k.rpartition(".")[0], head)}
        theirs = {k for k in state if not _under(k.rpartition(".")[0], head)}
        skip = "num_batches_tracked"
        if {k for k in body if not k.endswith(skip)} != {k for k in theirs if not k.endswith(skip)}:
            continue
        if all(v.shape == state[k].shape or (v.dim() == 4 and v.shape[0] == state[k].shape[0]
                                             and v.shape[2:] == state[k].shape[2:]) for k, v in body.items()
               if not k.endswith(skip)):  # fmt: skip
            names.append(name)
    return names
