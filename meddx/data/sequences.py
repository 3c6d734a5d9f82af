"""Token-id sequences: the Tianchi `|,|` reader (rounds 1 and 2), the vocabulary, and a torch Dataset."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from meddx.data.records import DataSet, Record
from meddx.errors import DataError

SEP = "|,|"
N_REGIONS, N_TYPES = 17, 12
REGION_NAMES = [f"region_{i}" for i in range(N_REGIONS)]
TYPE_NAMES = [f"type_{i}" for i in range(N_TYPES)]
PAD, UNK, MASK, N_SPECIAL = 0, 1, 2, 3


def is_tianchi_file(path: str | Path) -> bool:
    """True when the file's first line uses the `|,|` field separator."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return SEP in f.readline()
    except OSError:
        return False


def _ids(text: str, limit: int | None, what: str, where: str) -> list[int]:
    out = []
    for t in text.split():
        if not t.isdigit():
            raise DataError(f"{where}: {what} {t!r} is not a non-negative integer")
        v = int(t)
        if limit is not None and v >= limit:
            raise DataError(f"{where}: {what} {v} is out of range (0-{limit - 1})")
        out.append(v)
    return out


def read_tianchi(path: str | Path, label_set: str = "both", require_labels: bool = True) -> DataSet:
    """A Tianchi file `report_ID|,|tokens|,|label` (train) or `report_ID|,|tokens` (test), rounds 1 and 2.

    Round 1 labels are region ids; round 2 labels are `regions,types`. Empty label = normal. Identical
    descriptions share a patient id so that a split never puts them on two sides.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Tianchi file not found: {path}")
    rows: list[tuple[str, list[int], list[int] | None, list[int] | None, str]] = []
    n_fields, round2, seen = None, None, set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        fields = line.split(SEP)
        if n_fields is None:
            n_fields = len(fields)
            if n_fields not in (2, 3):
                raise DataError(f"{where}: {n_fields} fields; expected report_ID|,|description[|,|label]")
        if len(fields) != n_fields:
            raise DataError(f"{where}: {len(fields)} fields where the file's first line has {n_fields}")
        rid = fields[0].strip()
        if not rid:
            raise DataError(f"{where}: empty report_ID")
        if rid in seen:
            raise DataError(f"{where}: report_ID {rid} appears twice")
        seen.add(rid)
        tokens = _ids(fields[1], None, "token", where)
        if not tokens:
            raise DataError(f"{where}: empty description")
        regions = types = None
        if n_fields == 3:
            label = fields[2]
            if round2 is None:
                round2 = "," in label
            if round2 != ("," in label):
                raise DataError(f"{where}: label {label.strip()!r} is not in the file's format "
                                f"({'regions,types' if round2 else 'region ids without a comma'})")
            reg_text, _, type_text = label.partition(",")
            regions = _ids(reg_text, N_REGIONS, "region id", where)
            types = _ids(type_text, N_TYPES, "type id", where) if round2 else None
        rows.append((rid, tokens, regions, types, where))
    if not rows:
        raise DataError(f"{path}: no rows")
    labelled = n_fields == 3
    if require_labels and not labelled:
        raise DataError(f"{path}: no label field (report_ID|,|description only); it is a test file")
    if label_set == "types" and labelled and not round2:
        raise DataError(f"{path}: label_set 'types' needs a round-2 file (labels 'regions,types')")
    use_regions = label_set in ("both", "regions") or not labelled
    use_types = bool(round2) and label_set in ("both", "types")
    names = (REGION_NAMES if use_regions else []) + (TYPE_NAMES if use_types else [])
    first_by_text: dict[bytes, str] = {}
    records = []
    for rid, tokens, regions, types, where in rows:
        y = np.zeros(len(names), np.float32)
        if use_regions and regions:
            y[regions] = 1
        if use_types and types:
            y[[(N_REGIONS if use_regions else 0) + t for t in types]] = 1
        arr = np.asarray(tokens, dtype=np.int64)
        patient = first_by_text.setdefault(arr.tobytes(), rid)
        records.append(Record(rid, patient, str(path), y, row=where, tokens=arr))
    dups = sum(1 for r in records if r.patient_id != r.id)
    notes = ["each report is its own patient" + (f"; {dups} duplicate description(s) grouped with their first copy" if dups else "")]
    if not labelled:
        notes.append("unlabelled file (test set): labels are all zero")
    return DataSet(records, names, "multilabel", origin=str(path), notes=notes)


def read_descriptions(paths: list[str]) -> list[np.ndarray]:
    """Token arrays of unlabelled (or labelled) `|,|` files, labels ignored: the vocabulary and MLM corpus."""
    return [r.tokens for p in paths for r in read_tianchi(p, require_labels=False).records]


@dataclass
class Vocab:
    """Raw token id -> model index (0 pad, 1 unk, 2 mask, then the known tokens), and the padded length."""

    tokens: list[int]
    max_len: int

    def __post_init__(self):
        self._lookup = np.full(max(self.tokens, default=0) + 1, UNK, dtype=np.int64)
        self._lookup[self.tokens] = np.arange(N_SPECIAL, N_SPECIAL + len(self.tokens))

    @property
    def size(self) -> int:
        return N_SPECIAL + len(self.tokens)

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """Indices of one sequence, truncated to max_len and right-padded with 0; unknown tokens -> unk."""
        t = np.asarray(tokens, dtype=np.int64)[: self.max_len]
        out = np.zeros(self.max_len, dtype=np.int64)
        known = t < len(self._lookup)
        out[: len(t)] = np.where(known, self._lookup[np.minimum(t, len(self._lookup) - 1)], UNK)
        return out

    def encode_all(self, seqs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.encode(s) for s in seqs])) if seqs else torch.zeros(0, self.max_len, dtype=torch.long)

    def model_kwargs(self) -> dict:
        return {"vocab_size": self.size, "max_len": self.max_len}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"vocabulary file not found: {p}")
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
        self.labels = torch.from_numpy(np.stack([r.labels for r in records]).astype(np.float32)) if records else torch.zeros(0)

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
        "length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2), "median": float(np.median(lengths)),
                   "p95": float(np.percentile(lengths, 95)), "p99": float(np.percentile(lengths, 99)), "max": int(lengths.max())},
        "length_histogram": {f"{lo}-{lo + 9}": int(((lengths >= lo) & (lengths <= lo + 9)).sum())
                             for lo in range(0, int(lengths.max()) + 1, 10)},
        "distinct_tokens": len(train_tokens),
        "empty_label_rows": int((labels.sum(1) == 0).sum()),
        "empty_label_share": round(float((labels.sum(1) == 0).mean()), 4),
        "label_cardinality": round(float(labels.sum(1).mean()), 4),
        "label_count_distribution": {str(k): v for k, v in sorted(Counter(labels.sum(1).astype(int).tolist()).items())},
        "duplicate_description_groups": len(groups),
        "rows_in_duplicate_groups": sum(len(g) for g in groups),
        "duplicates_with_different_labels": sum(
            1 for g in groups if len({ds.records[i].labels.tobytes() for i in [int(_index(ds, x)) for x in g]}) > 1),
        "other_sets": {},
    }
    for name, seqs in (extra or {}).items():
        tokens = Counter(np.concatenate(seqs).tolist())
        unseen = {t for t in tokens if t not in train_tokens}
        texts = {s.tobytes() for s in seqs}
        out["other_sets"][name] = {
            "rows": len(seqs), "max_length": int(max(len(s) for s in seqs)), "distinct_tokens": len(tokens),
            "tokens_unseen_in_train": len(unseen),
            "occurrences_of_unseen_tokens_share": round(sum(tokens[t] for t in unseen) / max(sum(tokens.values()), 1), 5),
            "descriptions_also_in_train": sum(1 for t in texts if t in by_text),
        }
    return out


def _index(ds: DataSet, rid: str) -> int:
    if not hasattr(ds, "_id_index"):
        ds._id_index = {r.id: i for i, r in enumerate(ds.records)}  # type: ignore[attr-defined]
    return ds._id_index[rid]  # type: ignore[attr-defined]
