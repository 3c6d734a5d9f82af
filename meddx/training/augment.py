"""Medically safe batch augmentation: per-sample small affine moves and intensity jitter, any channel count."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from meddx.config import AugmentConfig


def augment_batch(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Random rotation, shift, scale and brightness/contrast per sample; left-right flip only if cfg.hflip."""
    n = x.shape[0]
    dev, dt = x.device, x.dtype
    u = lambda *shape: torch.rand(*shape, device=dev, dtype=dt) * 2 - 1  # noqa: E731 - uniform in [-1, 1]
    angle = u(n) * math.radians(cfg.rotate_degrees)
    scale = 1 + u(n) * cfg.scale
    flip = torch.ones(n, device=dev, dtype=dt)
    if cfg.hflip:
        flip = torch.where(torch.rand(n, device=dev) < 0.5, -flip, flip)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, u(n) * 2 * cfg.translate], 1),
            torch.stack([sin * flip, cos, u(n) * 2 * cfg.translate], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 1 + u(n, 1, 1, 1) * cfg.contrast
    brightness = u(n, 1, 1, 1) * cfg.brightness
    return x * contrast + brightness


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Mixup (Zhang et al. 2018): lam ~ Beta(alpha, alpha); inputs and (one-hot, multi-label or binary) labels mixed
    with a shuffled copy of the batch. Returns mixed x, mixed y, lam and the permutation."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm], lam, perm
