"""Training options the top Tianchi write-ups used, for any model: adversarial training on the embeddings, an EMA of
weights, Lookahead, focal loss; and pseudo-labels from earlier runs on unlabelled files."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from meddx.config.base import Section


class TricksConfig(Section):
    """Each is off by default; the report lists the ones a run used."""

    adversarial: Literal["off", "fgm", "pgd"] = Field(
        "off", description="Token models: FGM (one step) or PGD (several) perturbations of the word embeddings."
    )
    adversarial_eps: float = Field(1.0, gt=0, description="Norm of the embedding perturbation (FGM, PGD's bound).")
    pgd_steps: int = Field(3, ge=1, description="PGD: ascent steps of size eps / steps.")
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Exponential moving average of the weights (e.g. 0.999; 0: off); saved weights."
    )
    lookahead: bool = Field(False, description="Lookahead (k=6, alpha=0.5) around AdamW (timm's implementation).")
    loss: Literal["bce", "focal"] = Field("bce", description="focal: (1 - p_t)^gamma times BCE or cross-entropy.")
    focal_gamma: float = Field(2.0, ge=0)


class PseudoLabelConfig(Section):
    """Soft targets for unlabelled descriptions from earlier run or CV folders, fold-safe: fold k takes its labels from
    the sources' fold k, whose models never trained on fold k's test rows."""

    sources: list[str] = Field(default_factory=list, description="Run or `meddx cv` folders whose predictions label.")
    data: list[str] = Field(default_factory=list, description="Unlabelled files (e.g. the test A/B descriptions).")
    confidence: float = Field(
        0.95, gt=0.5, le=1, description="Keep a row when every label's probability is at most 1-c or at least c."
    )

    @model_validator(mode="after")
    def _both_or_none(self) -> PseudoLabelConfig:
        if bool(self.sources) != bool(self.data):
            raise ValueError("pseudo_labels needs both sources (run folders) and data (unlabelled files)")
        return self
