"""The token-sequence models of the top Tianchi 2021 write-ups: RCNN (Lai et al. 2015), DPCNN (Johnson and Zhang 2017)
and a BiGRU with attention pooling; registered like the others in `models.sequence`."""

from __future__ import annotations

import torch
from torch import nn

from meddx.models.pooling import DropoutHead, masked_max
from meddx.models.sequence import run_packed, seq_model


class _BiGRU(DropoutHead):
    """Embedding with spatial dropout -> BiGRU over the packed sequence: what RCNN and the attention BiGRU share."""

    def make_encoder(self, vocab_size: int, embed_dim: int, hidden: int, dropout: float) -> None:
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embed_drop = nn.Dropout1d(dropout)
        self.rnn = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings (B, L, E), states (B, L, 2H), mask (B, L)) of token indices (B, L)."""
        mask = x != 0
        e = self.embed_drop(self.embed(x).transpose(1, 2)).transpose(1, 2)
        return e, run_packed(self.rnn, e, mask), mask


class RCNN(_BiGRU):
    """Embedding -> BiGRU; each word's left and right context beside its embedding -> tanh projection -> max over
    time -> linear (Lai et al., AAAI 2015)."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 128,
        hidden: int = 128,
        projection: int = 256,
        dropout: float = 0.3,
        dropout_samples: int = 1,
    ):
        super().__init__()
        self.make_encoder(vocab_size, embed_dim, hidden, dropout)
        self.project = nn.Linear(2 * hidden + embed_dim, projection)
        self.make_head(projection, num_classes, dropout, dropout_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e, h, mask = self.encode(x)
        return self.classify(masked_max(torch.tanh(self.project(torch.cat([h, e], dim=2))), mask))


class DPCNN(DropoutHead):
    """Deep pyramid CNN: a region embedding, two pre-activation convolutions, then blocks of (pool by 2, two
    convolutions, shortcut) until one position is left -> linear (Johnson and Zhang, ACL 2017). Inputs are padded to
    `max_len` first, so a report's output does not depend on the longest report of its batch."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        max_len: int,
        embed_dim: int = 128,
        filters: int = 128,
        dropout: float = 0.3,
        dropout_samples: int = 1,
    ):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.region = nn.Conv1d(embed_dim, filters, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv1d(filters, filters, 3, padding=1) for _ in range(2))
        self.block_convs = nn.ModuleList(nn.Conv1d(filters, filters, 3, padding=1) for _ in range(2))
        self.pool = nn.MaxPool1d(3, stride=2, padding=1)
        self.make_head(filters, num_classes, dropout, dropout_samples)

    def _two_convs(self, h: torch.Tensor, convs: nn.ModuleList) -> torch.Tensor:
        for conv in convs:
            h = conv(torch.relu(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x[:, : self.max_len], (0, max(self.max_len - x.shape[1], 0)))
        keep = (x != 0).unsqueeze(1).float()
        h = self.region(self.embed(x).transpose(1, 2)) * keep  # padding stays zero
        h = h + self._two_convs(h, self.convs)
        while h.shape[2] > 1:  # the pyramid: half the positions per block, the block's weights shared
            h = self.pool(h)
            h = h + self._two_convs(h, self.block_convs)
        return self.classify(h[:, :, 0])


class AttentionBiGRU(_BiGRU):
    """Embedding -> BiGRU -> additive attention pooling (softmax over the non-padding words) beside max pooling ->
    linear."""

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 128,
        hidden: int = 128,
        dropout: float = 0.3,
        dropout_samples: int = 1,
    ):
        super().__init__()
        self.make_encoder(vocab_size, embed_dim, hidden, dropout)
        self.score = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        self.make_head(4 * hidden, num_classes, dropout, dropout_samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, mask = self.encode(x)
        weights = self.score(h).squeeze(2).masked_fill(~mask, float("-inf")).softmax(1)
        attended = (weights.unsqueeze(2) * h).sum(1)
        return self.classify(torch.cat([attended, masked_max(h, mask)], dim=1))


@seq_model("rcnn", "RCNN: BiGRU context + embedding, tanh projection, max over time (token sequences)")
def rcnn(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return RCNN(num_classes, vocab_size, dropout=dropout, **kw)


@seq_model("dpcnn", "DPCNN: deep pyramid convolutions with shortcuts (token sequences)")
def dpcnn(in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw) -> nn.Module:
    return DPCNN(num_classes, vocab_size, max_len, dropout=dropout, **kw)


@seq_model("bigru_attention", "BiGRU with attention + max pooling (token sequences)")
def bigru_attention(
    in_chans: int, num_classes: int, vocab_size: int, max_len: int, dropout: float = 0.3, **kw
) -> nn.Module:
    return AttentionBiGRU(num_classes, vocab_size, dropout=dropout, **kw)
