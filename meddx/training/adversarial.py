"""Adversarial training on the word embeddings (FGM, Miyato et al. 2017; PGD, Madry et al. 2018), as the top Tianchi
2021 teams used it: the loss at embeddings pushed along their gradient is added to the clean loss. The embedding
weights are never changed in place: a forward hook adds the perturbation to the looked-up vectors, then goes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from meddx.config import TricksConfig
from meddx.models.embeddings import word_embedding


@contextmanager
def perturbed(embedding: nn.Embedding, delta: torch.Tensor) -> Iterator[None]:
    """Inside the block, token t embeds as weight[t] + delta[t]; the weights themselves stay as they are."""

    def add(module: nn.Embedding, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        shift = F.embedding(inputs[0], delta)
        if module.padding_idx is not None:  # padding is never perturbed
            shift = shift * (inputs[0] != module.padding_idx).unsqueeze(-1)
        return output + shift

    handle = embedding.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def _step(grad: torch.Tensor, size: float) -> torch.Tensor:
    return size * grad / grad.norm().clamp(min=1e-12)


def adversarial_loss(
    model: nn.Module, loss_at: Callable[[], torch.Tensor], clean_loss: torch.Tensor, tricks: TricksConfig
) -> torch.Tensor:
    """The loss at the adversarial embeddings (`loss_at()` runs the model on the batch). FGM: one step of norm eps
    along the clean loss's gradient; PGD: `pgd_steps` steps of eps/steps, projected back into the eps ball."""
    emb = word_embedding(model)
    eps = tricks.adversarial_eps
    (grad,) = torch.autograd.grad(clean_loss, emb.weight, retain_graph=True)
    if tricks.adversarial == "fgm":
        delta = _step(grad, eps).detach()
    else:
        delta = torch.zeros_like(emb.weight)
        for k in range(tricks.pgd_steps):
            delta = delta + _step(grad, eps / tricks.pgd_steps)
            delta = (delta * (eps / delta.norm().clamp(min=eps))).detach()  # projected into the eps ball
            if k < tricks.pgd_steps - 1:
                delta.requires_grad_(True)
                with perturbed(emb, delta):
                    (grad,) = torch.autograd.grad(loss_at(), delta)
                delta = delta.detach()
    with perturbed(emb, delta):
        return loss_at()
