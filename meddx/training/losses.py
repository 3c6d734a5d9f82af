"""Class-weighted losses: the AI-for-Medicine weighted BCE and balanced cross-entropy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMBALANCE_BAND = (0.4, 0.6)


def bce_weights(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label (w_pos, w_neg) = (neg / total, pos / total) so both classes add equally to the loss."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = np.nansum(labels, axis=0) / np.sum(~np.isnan(labels), axis=0)
    return (1.0 - pos).astype(np.float32), pos.astype(np.float32)


def balanced_class_weights(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-class weights total / (K * count_k), as scikit-learn's 'balanced'."""
    counts = np.bincount(classes, minlength=num_classes).astype(np.float64)
    return (counts.sum() / (num_classes * np.maximum(counts, 1))).astype(np.float32)


def is_imbalanced(labels: np.ndarray, task: str) -> bool:
    """True when a label's positive share (or a class's share) lies outside 40-60% (2 classes) or is far from 1/K."""
    labels = np.asarray(labels, dtype=np.float64)
    if task == "multiclass":
        share = labels.mean(0)
        return bool(share.max() / max(share.min(), 1e-9) > 1.5)
    pos = np.nanmean(labels, axis=0)
    return bool(np.any((pos < IMBALANCE_BAND[0]) | (pos > IMBALANCE_BAND[1])))


def weighted_bce_with_logits(
    logits: torch.Tensor, target: torch.Tensor, w_pos: torch.Tensor, w_neg: torch.Tensor
) -> torch.Tensor:
    """mean over samples and labels of -(w_pos y log p + w_neg (1 - y) log(1 - p)); NaN targets are ignored."""
    known = ~torch.isnan(target)
    y = torch.nan_to_num(target)
    weight = (y * w_pos + (1 - y) * w_neg) * known
    loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight, reduction="sum")
    return loss / known.sum().clamp(min=1)


def focal_bce_with_logits(
    logits: torch.Tensor, target: torch.Tensor, w_pos: torch.Tensor, w_neg: torch.Tensor, gamma: float
) -> torch.Tensor:
    """The weighted BCE above with each term scaled by (1 - p_t)^gamma (Lin et al. 2017, torchvision's
    sigmoid_focal_loss): confident, correct labels add little; NaN targets are ignored."""
    from torchvision.ops import sigmoid_focal_loss

    known = ~torch.isnan(target)
    y = torch.nan_to_num(target)
    weight = (y * w_pos + (1 - y) * w_neg) * known
    loss = sigmoid_focal_loss(logits, y, alpha=-1, gamma=gamma, reduction="none")
    return (loss * weight).sum() / known.sum().clamp(min=1)


def focal_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, gamma: float, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over (one-hot or soft) class targets, each sample's term scaled by (1 - p_t)^gamma."""
    ce = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing, reduction="none")
    p_t = (logits.softmax(1) * target).sum(1)
    return ((1 - p_t).clamp(min=0) ** gamma * ce).mean()


@dataclass
class LossWeights:
    """Class weights of the loss: per-label (w+, w-) for BCE, per-class for cross-entropy; None: unweighted."""

    pos_weight: list[float] | None = None
    neg_weight: list[float] | None = None
    class_weight: list[float] | None = None

    def to_dict(self) -> dict:
        """The weights that are set (training.json's `loss_weights`)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def loss_weights(class_weights: str, labels: np.ndarray, task: str) -> LossWeights:
    """Balanced weights from the training labels when `class_weights` is "on", or "auto" and the labels are
    imbalanced."""
    if not (class_weights == "on" or (class_weights == "auto" and is_imbalanced(labels, task))):
        return LossWeights()
    if task == "multiclass":
        return LossWeights(class_weight=balanced_class_weights(labels.argmax(1), labels.shape[1]).tolist())
    w_pos, w_neg = bce_weights(labels)
    return LossWeights(pos_weight=w_pos.tolist(), neg_weight=w_neg.tolist())
