"""An ensemble of k models as one model: the average of their probabilities, returned as logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meddx.models.output import logits_of, probabilities
from meddx.models.tta import ShiftAverage


class ProbabilityAverage(nn.Module):
    """Averages members' probabilities (weights optional, normalised) and returns the logits of the average, so the
    task's usual activation gives the average."""

    def __init__(self, members: list[nn.Module], task: str, weights: list[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task = task
        w = torch.tensor(weights if weights is not None else [1.0] * len(members), dtype=torch.float64)
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = sum(w * probabilities(m(x).double(), self.task) for w, m in zip(self.weights, self.members))
        return logits_of(p, self.task).to(
            x.dtype if x.is_floating_point() else torch.get_default_dtype()
        )  # token ids: ints


class Renormalised(nn.Module):
    """A model trained on images normalised with one per-channel (mean, std), fed images normalised with another:
    the input is mapped back first (the folds of a CV folder each normalise with their own training images)."""

    def __init__(self, model: nn.Module, given: tuple[list[float], list[float]], own: tuple[list[float], list[float]]):
        super().__init__()
        self.inner = model
        g_mean, g_std = (torch.tensor(v, dtype=torch.float64) for v in given)
        o_mean, o_std = (torch.tensor(v, dtype=torch.float64) for v in own)
        # own = (raw - o_mean) / o_std with raw = given * g_std + g_mean
        self.register_buffer("scale", (g_std / o_std).float().view(1, -1, 1, 1))
        self.register_buffer("shift", ((g_mean - o_mean) / o_std).float().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.scale + self.shift)


class Resized(nn.Module):
    """A model trained at another image size, fed this ensemble's inputs: resized first (bilinear, antialiased, as
    `Preprocess.resize` does; data-set normalisation commutes with it, a per-image z-score is taken again)."""

    def __init__(self, model: nn.Module, size: tuple[int, int], per_image: bool = False):
        super().__init__()
        self.inner, self.size, self.per_image = model, tuple(size), per_image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        if self.per_image:  # as Preprocess.normalise: z(resize(z(raw))) = z(resize(raw)), resizing being linear
            x = (x - x.mean((-2, -1), keepdim=True)) / (x.std((-2, -1), keepdim=True) + 1e-6)
        return self.inner(x)


ADAPTERS = (Renormalised, Resized)


def adapted(model: nn.Module, own, given) -> nn.Module:
    """A member `model` with its own preprocessing `own` (a `Preprocess`: size, normalisation) fed inputs prepared
    by `given`, the ensemble's: renormalised (data-set statistics) and resized where they differ."""
    if given.normalize == "dataset" and (own.mean, own.std) != (given.mean, given.std):
        model = Renormalised(model, (given.mean, given.std), (own.mean, own.std))
    if tuple(own.image_size) != tuple(given.image_size):
        model = Resized(model, own.image_size, per_image=own.normalize == "sample")
    return model


def core_of(model: nn.Module) -> tuple[nn.Module, tuple[int, int] | None]:
    """The model under its adapters and test-time augmentation, and the input size it takes (None: the given one);
    Grad-CAM finds its layer there."""
    size = None
    while isinstance(model, (*ADAPTERS, ShiftAverage)):
        size = model.size if isinstance(model, Resized) else size
        model = model.inner
    return model, size


def without_shifts(model: nn.Module) -> nn.Module:
    """`model` with every test-time augmentation under its adapters taken out, in place (give it a copy)."""
    if isinstance(model, ShiftAverage):
        return without_shifts(model.inner)
    if isinstance(model, ADAPTERS):
        model.inner = without_shifts(model.inner)
    return model
