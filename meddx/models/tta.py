"""Test-time augmentation as one model: the average of the probabilities over the image and four copies shifted by
a few pixels (up, down, left, right; edges repeated), the medically safe moves of training. Returned as logits, so
the run, its ONNX package and the service all see one model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meddx.models.output import logits_of, probabilities

SHIFT = 0.03  # of the image side, at least one pixel
VIEWS = 5  # the image and four shifts: the forward passes per image


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (B, C, H, W) moved by (dy, dx) pixels, the edge rows and columns repeated (no wrap-around)."""
    h, w = x.shape[-2:]
    pad = max(abs(dy), abs(dx))
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


class ShiftAverage(nn.Module):
    """`model` averaged over shifted copies of its input; `inner` is the model itself (Grad-CAM explains it)."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.inner, self.task = model, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = max(1, round(SHIFT * min(x.shape[-2:])))
        views = (x, shifted(x, s, 0), shifted(x, -s, 0), shifted(x, 0, s), shifted(x, 0, -s))
        p = sum(probabilities(self.inner(v).double(), self.task) for v in views) / len(views)
        return logits_of(p, self.task).to(x.dtype)


def without_tta(model: nn.Module) -> nn.Module:
    """The model under a test-time-augmentation wrapper (the model itself if there is none)."""
    return model.inner if isinstance(model, ShiftAverage) else model
