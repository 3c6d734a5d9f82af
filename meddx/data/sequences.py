"""Token-id sequences: the vocabulary, a torch Dataset, padding-trimmed batches, length-grouped sampling and a
summary for explore (the `|,|` report files are read by `data.reports`)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from meddx.atomic import write_text
from meddx.data.records import DataSet, Record
from meddx.errors import DataError, not_found

PAD, UNK, MASK, N_SPECIAL = 0, 1, 2, 3


@dataclass
class Vocab:
    """Raw token id -> model index (0 pad, 1 unk, 2 mask, then the known tokens), and the padded length."""

    tokens: list[int]
    max_len: int

    def __post_init__(self):
        # a sorted table searched per token: memory grows with the number of tokens, not the largest id (one token
        # 3 x 10^8 cost 2.24 GiB per build as a dense lookup)
        ids = np.asarray(self.tokens, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        self._sorted, self._index = ids[order], N_SPECIAL + order

    @property
    def size(self) -> int:
        return N_SPECIAL + len(self.tokens)

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """Indices of one sequence, truncated to max_len and right-padded with 0; unknown tokens -> unk."""
        t = np.asarray(tokens, dtype=np.int64)[: self.max_len]
        out = np.zeros(self.max_len, dtype=np.int64)
        if not len(self._sorted):
            out[: len(t)] = UNK
            return out
        pos = np.minimum(np.searchsorted(self._sorted, t), len(self._sorted) - 1)
        out[: len(t)] = np.where(self._sorted[pos] == t, self._index[pos], UNK)
        return out

    def coverage(self, seqs: list[np.ndarray]) -> dict:
        """Tokens of `seqs` not in the vocabulary (read as unk) and reports longer than max_len (cut), with totals."""
        tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, tokens), max(len(self._sorted) - 1, 0))
        known = self._sorted[pos] == tokens if len(self._sorted) else np.zeros(len(tokens), bool)
        unknown = tokens[~known]
        return {"unknown": len(unknown), "tokens": len(tokens), "distinct_unknown": len(np.unique(unknown)),
                "cut": sum(len(s) > self.max_len for s in seqs), "reports": len(seqs)}  # fmt: skip

    def encode_all(self, seqs: list[np.ndarray]) -> torch.Tensor:
        return (
            torch.from_numpy(np.stack([self.encode(s) for s in seqs]))
            if seqs
            else torch.zeros(0, self.max_len, dtype=torch.long)
        )

    def model_kwargs(self) -> dict:
        return {"vocab_size": self.size, "max_len": self.max_len}

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        p = Path(path)
        if not p.is_file():
            raise DataError(not_found("vocabulary file", p))
        d = json.loads(p.read_text())
        return cls([int(t) for t in d["tokens"]], int(d["max_len"]))


def build_vocab(seqs: list[np.ndarray], max_len: int | None = None) -> Vocab:
    """Every token seen (train + test descriptions); max_len defaults to the longest sequence."""
    seen = np.unique(np.concatenate(seqs)) if seqs else np.zeros(0, np.int64)
    return Vocab([int(t) for t in seen], max_len or max(len(s) for s in seqs))


class SequenceDataset(Dataset):
    """(token indices (L,), label vector) pairs, encoded once up front."""

    def __init__(self, records: list[Record], vocab: Vocab):
        self.records, self.vocab = records, vocab
        self.inputs = vocab.encode_all([r.tokens for r in records])
        self.labels = (
            torch.from_numpy(np.stack([r.labels for r in records]).astype(np.float32)) if records else torch.zeros(0)
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.labels[i]


def trim_columns(x: torch.Tensor) -> torch.Tensor:
    """(B, L) token indices without the trailing padding columns every row shares (masked models: same outputs)."""
    longest = int((x != PAD).sum(1).max()) if len(x) else 0
    return x[:, : max(longest, 1)]


def trim_padding(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Collate of (tokens, ...) items that cuts the batch's shared padding columns."""
    first, *rest = (torch.stack(items) for items in zip(*batch))
    return (trim_columns(first), *rest)


def length_grouped_sampler(inputs: torch.Tensor, batch_size: int):
    """transformers' LengthGroupedSampler over (N, L) token indices: random mega-batches of 50 batches, each sorted
    by length, so padded steps (and epoch time) shrink while the batches stay shuffled."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    return LengthGroupedSampler(batch_size, lengths=(inputs != PAD).sum(1).tolist())


def is_sequence(ds: DataSet) -> bool:
    return bool(ds.records) and ds.records[0].tokens is not None


def sequence_summary(ds: DataSet, extra: dict[str, list[np.ndarray]] | None = None) -> dict:
    """Lengths, vocabulary, token overlap with unlabelled sets, empty labels, duplicate descriptions."""
    lengths = np.array([len(r.tokens) for r in ds.records])
    train_tokens = set(np.concatenate([r.tokens for r in ds.records]).tolist())
    by_text: dict[bytes, list[str]] = defaultdict(list)
    for r in ds.records:
        by_text[r.tokens.tobytes()].append(r.id)
    groups = [g for g in by_text.values() if len(g) > 1]
    labels = ds.labels
    out = {
        "length": {
            "min": int(lengths.min()),
            "mean": round(float(lengths.mean()), 2),
            "median": float(np.median(lengths)),
            "p95": float(np.percentile(lengths, 95)),
            "p99": float(np.percentile(lengths, 99)),
            "max": int(lengths.max()),
        },
        "length_histogram": {
            f"{lo}-{lo + 9}": int(((lengths >= lo) & (lengths <= lo + 9)).sum())
            for lo in range(0, int(lengths.max()) + 1, 10)
        },
        "distinct_tokens": len(train_tokens),
        "empty_label_rows": int((labels.sum(1) == 0).sum()),
        "empty_label_share": round(float((labels.sum(1) == 0).mean()), 4),
        "label_cardinality": round(float(labels.sum(1).mean()), 4),
        "label_count_distribution": {str(k): v for k, v in sorted(Counter(labels.sum(1).astype(int).tolist()).items())},
        "duplicate_description_groups": len(groups),
        "rows_in_duplicate_groups": sum(len(g) for g in groups),
        "duplicates_with_different_labels": sum(
            1 for g in groups if len({ds.records[i].labels.tobytes() for i in [int(_index(ds, x)) for x in g]}) > 1
        ),
        "other_sets": {},
    }
    for name, seqs in (extra or {}).items():
        tokens = Counter(np.concatenate(seqs).tolist())
        unseen = {t for t in tokens if t not in train_tokens}
        texts = {s.tobytes() for s in seqs}
        out["other_sets"][name] = {
            "rows": len(seqs),
            "max_length": int(max(len(s) for s in seqs)),
            "distinct_tokens": len(tokens),
            "tokens_unseen_in_train": len(unseen),
            "occurrences_of_unseen_tokens_share": round(
                sum(tokens[t] for t in unseen) / max(sum(tokens.values()), 1), 5
            ),
            "descriptions_also_in_train": sum(1 for t in texts if t in by_text),
        }
    return out


def _index(ds: DataSet, rid: str) -> int:
    if not hasattr(ds, "_id_index"):
        ds._id_index = {r.id: i for i, r in enumerate(ds.records)}  # type: ignore[attr-defined]
    return ds._id_index[rid]  # type: ignore[attr-defined]
