"""Sequence classifiers over token indices (B, L), 0 = padding: BiLSTM/BiGRU, Transformer, TextCNN, small BERT."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from meddx.errors import ConfigError
from meddx.models.registry import register_model

BERT_SIZES = {  # hidden, layers, heads: "cpu" trains on 2 cores, "gpu" where CUDA is present
    "tiny": (64, 2, 2),
    "cpu": (256, 4, 4),
    "gpu": (512, 8, 8),
}


def masked_mean_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Concatenated mean and max over the non-padding positions of (B, L, D) states -> (B, 2D)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
    mx = h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)
    return torch.cat([mean, mx], dim=1)


class RNNClassifier(nn.Module):
    """Embedding -> bidirectional LSTM/GRU (packed) -> max + mean pooling -> linear."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        cell: str = "lstm",
        embed_dim: int = 128,
        hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.3,
        spatial_dropout: bool = True,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        # spatial dropout drops whole embedding channels of a report; plain Dropout drops single values
        self.embed_drop = nn.Dropout1d(dropout) if spatial_dropout else nn.Dropout(dropout)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            embed_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != 0
        lengths = mask.sum(1).clamp(min=1)
        e = self.embed_drop(self.embed(x).transpose(1, 2)).transpose(1, 2)  # (B, C, L): Dropout1d drops channels
        packed = nn.utils.rnn.pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.rnn(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.head(self.drop(masked_mean_max(h, mask)))


class TransformerClassifier(nn.Module):
    """Embedding + learned positions -> nn.TransformerEncoder (pre-norm) -> mean + max pooling -> linear."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        max_len: int,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 2,
        ff: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != 0
        h = self.embed(x) + self.pos[:, : x.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        return self.head(self.drop(masked_mean_max(h, mask)))


class TextCNN(nn.Module):
    """Kim's TextCNN: embedding -> parallel 1-D convolutions -> max over time -> linear."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 128,
        filters: int = 128,
        kernel_sizes: tuple[int, ...] = (2, 3, 4, 5),
        dropout: float = 0.3,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, k, padding=k // 2) for k in kernel_sizes)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(filters * len(kernel_sizes), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x != 0).unsqueeze(1)
        e = self.embed(x).transpose(1, 2)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(e))[..., : x.shape[1]]
            pooled.append(h.masked_fill(~mask, 0.0).amax(2))  # ReLU outputs are >= 0, so 0 is a safe fill
        return self.head(self.drop(torch.cat(pooled, 1)))


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


class BertClassifier(nn.Module):
    """transformers BertModel (no pooler) -> mean + max pooling over tokens -> linear head."""

    def __init__(self, num_classes: int, vocab_size: int, max_len: int, size: str = "cpu", dropout: float = 0.1):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(bert_config(vocab_size, max_len, resolve_size(size), dropout), add_pooling_layer=False)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * self.bert.config.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != 0
        h = self.bert(input_ids=x, attention_mask=mask.long()).last_hidden_state
        return self.head(self.drop(masked_mean_max(h, mask)))

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


def _seq(name: str, description: str):
    return register_model(name, 1, description, kind="sequence")


@_seq("bilstm", "Embedding + BiLSTM, max+mean pooling (token sequences)")
def bilstm(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return RNNClassifier(num_classes, vocab_size, "lstm", dropout=dropout, **kw)


@_seq("bigru", "Embedding + BiGRU, max+mean pooling (token sequences)")
def bigru(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return RNNClassifier(num_classes, vocab_size, "gru", dropout=dropout, **kw)


@_seq("transformer", "Embedding + nn.TransformerEncoder, mean+max pooling (token sequences)")
def transformer(
    in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.1, **kw
) -> nn.Module:
    return TransformerClassifier(num_classes, vocab_size, max_len, dropout=dropout, **kw)


@_seq("textcnn", "TextCNN: convolutions of widths 2-5, max over time (token sequences)")
def textcnn(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return TextCNN(num_classes, vocab_size, dropout=dropout, **kw)


@_seq(
    "bert_small", "transformers BERT from a config (cpu: 256x4 layers; gpu: 512x8), MLM-pretrainable (token sequences)"
)
def bert_small(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.1, **kw) -> nn.Module:
    return BertClassifier(num_classes, vocab_size, max_len, dropout=dropout, **kw)
