"""An ensemble of k models as one model: the average of their probabilities, returned as logits."""

from __future__ import annotations

import torch
from torch import nn


class ProbabilityAverage(nn.Module):
    """Averages members' probabilities (softmax for multi-class, sigmoid otherwise; weights optional, normalised) and
    returns logits of the average (log for multi-class, logit otherwise), so the usual activation gives the average."""

    def __init__(self, members: list[nn.Module], task: str, weights: list[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task = task
        w = torch.tensor(weights if weights is not None else [1.0] * len(members), dtype=torch.float64)
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = (lambda z: torch.softmax(z, 1)) if self.task == "multiclass" else torch.sigmoid
        p = sum(w * act(m(x).double()) for w, m in zip(self.weights, self.members))
        out = torch.log(p) if self.task == "multiclass" else torch.logit(p)
        return out.to(x.dtype if x.is_floating_point() else torch.get_default_dtype())  # token ids are integers
