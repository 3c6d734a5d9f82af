"""The hand-written peers' training epoch: plain PyTorch, nothing from meddx."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def plain_bce_epoch(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> None:
    """One epoch of shuffled mini-batches with unweighted BCE on logits."""
    model.train()
    perm = torch.randperm(len(x))
    for i in range(0, len(perm), batch_size):
        idx = perm[i : i + batch_size]
        loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
