"""What every token-sequence classifier shares: pooling over non-padding positions and a dropout + linear head with
optional multi-sample dropout."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Concatenated mean and max over the non-padding positions of (B, L, D) states -> (B, 2D)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.cat([mean, masked_max(h, mask)], dim=1)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the non-padding positions of (B, L, D) states -> (B, D)."""
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)


class DropoutHead(nn.Module):
    """Base of the sequence classifiers: `classify` applies dropout then the linear head; with `dropout_samples` > 1,
    training averages the head's logits over that many dropout masks (multi-sample dropout, Inoue 2019)."""

    def make_head(self, features: int, num_classes: int, dropout: float, dropout_samples: int = 1) -> None:
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_classes)
        self.dropout_samples = dropout_samples

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout_samples > 1:
            return torch.stack([self.head(self.drop(h)) for _ in range(self.dropout_samples)]).mean(0)
        return self.head(self.drop(h))
