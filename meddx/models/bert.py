"""BERT for token sequences, built from a config (transformers; nothing is downloaded): sizes, the classifier, and
loading an MLM encoder from `meddx pretrain`."""

from __future__ import annotations

from pathlib import Path

import torch

from meddx.errors import ConfigError
from meddx.models.pooling import DropoutHead, masked_mean_max

BERT_SIZES = {  # hidden, layers, heads: "cpu" trains on 2 cores, "gpu" where CUDA is present
    "tiny": (64, 2, 2),
    "cpu": (256, 4, 4),
    "gpu": (512, 8, 8),
}


def bert_config(vocab_size: int, max_len: int, size: str = "cpu", dropout: float = 0.1):
    """transformers BertConfig for a named size (built from a config: nothing is downloaded)."""
    from transformers import BertConfig

    if size not in BERT_SIZES:
        raise ConfigError(f"bert size '{size}' unknown; use one of {sorted(BERT_SIZES)} (or auto)")
    hidden, layers, heads = BERT_SIZES[size]
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_len,
        type_vocab_size=1,
        pad_token_id=0,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def resolve_size(size: str) -> str:
    """'auto' is the GPU size where CUDA is present, else the CPU size."""
    return ("gpu" if torch.cuda.is_available() else "cpu") if size == "auto" else size


class BertClassifier(DropoutHead):
    """transformers BertModel (no pooler) -> mean + max pooling over tokens -> linear head."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        max_len: int,
        size: str = "cpu",
        dropout: float = 0.1,
        dropout_samples: int = 1,
    ):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(bert_config(vocab_size, max_len, resolve_size(size), dropout), add_pooling_layer=False)
        self.make_head(2 * self.bert.config.hidden_size, num_classes, dropout, dropout_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != 0
        h = self.bert(input_ids=x, attention_mask=mask.long()).last_hidden_state
        return self.classify(masked_mean_max(h, mask))

    @property
    def feature_info(self) -> list[dict]:
        """Fine-tuning blocks (timm-style): the embeddings, then each transformer layer (see meddx.models.finetune)."""
        layers = [f"bert.encoder.layer.{i}" for i in range(len(self.bert.encoder.layer))]
        return [{"module": m} for m in ["bert.embeddings", *layers]]

    def load_pretrained(self, path: str | Path) -> None:
        """Load an MLM encoder (`bert.*` keys from `meddx pretrain`) the way `train.init_from` loads any model: the
        head stays new, any other missing or mismatched tensor is named."""
        from meddx.models.finetune import load_pretrained

        load_pretrained(self, path)
