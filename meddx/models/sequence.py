"""Sequence classifiers over token indices (B, L), 0 = padding: BiLSTM/BiGRU, Transformer, TextCNN and small BERT here;
RCNN, DPCNN and BiGRU with attention pooling in `models.text`."""

from __future__ import annotations

import torch
from torch import nn

from meddx.models.bert import BERT_SIZES, BertClassifier, bert_config, resolve_size  # noqa: F401 (re-exported)
from meddx.models.pooling import DropoutHead, masked_mean_max
from meddx.models.registry import register_model


class RNNClassifier(DropoutHead):
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
        dropout_samples: int = 1,
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
        self.make_head(4 * hidden, num_classes, dropout, dropout_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != 0
        e = self.embed_drop(self.embed(x).transpose(1, 2)).transpose(1, 2)  # (B, C, L): Dropout1d drops channels
        return self.classify(masked_mean_max(run_packed(self.rnn, e, mask), mask))


def run_packed(rnn: nn.RNNBase, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A batch-first RNN over (B, L, C) inputs with the padding packed away -> (B, L, H) states (zeros at padding)."""
    lengths = mask.sum(1).clamp(min=1)
    packed = nn.utils.rnn.pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
    h, _ = rnn(packed)
    h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=mask.shape[1])
    return h


class TransformerClassifier(DropoutHead):
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
        dropout_samples: int = 1,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.make_head(2 * d_model, num_classes, dropout, dropout_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != 0
        h = self.embed(x) + self.pos[:, : x.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        return self.classify(masked_mean_max(h, mask))


class TextCNN(DropoutHead):
    """Kim's TextCNN: embedding -> parallel 1-D convolutions -> max over time -> linear."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 128,
        filters: int = 128,
        kernel_sizes: tuple[int, ...] = (2, 3, 4, 5),
        dropout: float = 0.3,
        dropout_samples: int = 1,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, k, padding=k // 2) for k in kernel_sizes)
        self.make_head(filters * len(kernel_sizes), num_classes, dropout, dropout_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x != 0).unsqueeze(1)
        e = self.embed(x).transpose(1, 2)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(e))[..., : x.shape[1]]
            pooled.append(h.masked_fill(~mask, 0.0).amax(2))  # ReLU outputs are >= 0, so 0 is a safe fill
        return self.classify(torch.cat(pooled, 1))


def seq_model(name: str, description: str):
    """Register a token-sequence builder `f(in_chans, num_classes, vocab_size, max_len, **kw)`."""
    return register_model(name, 1, description, kind="sequence")


@seq_model("bilstm", "Embedding + BiLSTM, max+mean pooling (token sequences)")
def bilstm(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return RNNClassifier(num_classes, vocab_size, "lstm", dropout=dropout, **kw)


@seq_model("bigru", "Embedding + BiGRU, max+mean pooling (token sequences)")
def bigru(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return RNNClassifier(num_classes, vocab_size, "gru", dropout=dropout, **kw)


@seq_model("transformer", "Embedding + nn.TransformerEncoder, mean+max pooling (token sequences)")
def transformer(
    in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.1, **kw
) -> nn.Module:
    return TransformerClassifier(num_classes, vocab_size, max_len, dropout=dropout, **kw)


@seq_model("textcnn", "TextCNN: convolutions of widths 2-5, max over time (token sequences)")
def textcnn(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return TextCNN(num_classes, vocab_size, dropout=dropout, **kw)


@seq_model(
    "bert_small", "transformers BERT from a config (cpu: 256x4 layers; gpu: 512x8), MLM-pretrainable (token sequences)"
)
def bert_small(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.1, **kw) -> nn.Module:
    return BertClassifier(num_classes, vocab_size, max_len, dropout=dropout, **kw)
