"""The `pretrain` section: self-supervised pretraining, labels unused."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from meddx.config.base import Section


class PretrainConfig(Section):
    """Self-supervised pretraining, labels unused: masked-language modelling of bert_small or word2vec vectors on every
    description (token reports), or SimCLR contrastive learning of the image model on every unlabelled image named."""

    objective: Literal["auto", "mlm", "simclr", "word2vec"] = Field(
        "auto",
        description="auto: mlm for `|,|` report files, simclr for images; word2vec: gensim word vectors for the "
        "embedding of any sequence model (model.embeddings).",
    )
    dir: str = Field(
        "pretrained/bert_small", description="Output folder: encoder.pt, vocab.json, model_kwargs.json, checkpoints."
    )
    data: list[str] = Field(
        default_factory=list, description="simclr: image folders, CSVs and .npz files (default: data.path)."
    )
    exclude_from: list[str] = Field(
        default_factory=list,
        description="simclr: data sets whose val and test images (meddx's default split) are left out, so a model "
        "fine-tuned on them never saw its evaluation images.",
    )
    temperature: float = Field(0.5, gt=0, description="simclr: NT-Xent temperature.")
    max_epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float | None = Field(None, gt=0, description="Default: 5e-4 for mlm, 3e-3 for simclr.")
    mask_prob: float = Field(0.15, gt=0, lt=1)
    masking: Literal["token", "ngram"] = Field(
        "token", description="mlm: mask single tokens, or whole spans of 1..max_ngram tokens (n-gram masking)."
    )
    max_ngram: int = Field(3, ge=1, le=10, description="mlm n-gram masking: longest masked span.")
    vector_size: int = Field(128, ge=8, description="word2vec: dimensions (the sequence models' embedding: 128).")
    window: int = Field(5, ge=1, description="word2vec: context window.")
    val_fraction: float = Field(0.05, ge=0, lt=1)
    size: Literal["auto", "tiny", "cpu", "gpu"] = Field(
        "auto", description="bert_small size: auto is gpu where CUDA is present, else cpu."
    )
    precision: str = Field("auto", description="auto: 16-mixed on GPU, 32-true on CPU.")
    limit_train_batches: float | int | None = None
    group_by_length: bool = Field(
        True,
        description="Batches of similar lengths (transformers' LengthGroupedSampler): "
        "faster; MLM has no labels for the batches to be skewed by.",
    )
