"""The bootstrap in one pass: the ranking and confusion figures of every predictor come from segments of items (one
per tied score and patient, by descending score) walked once per resample by a numba kernel (`_walk`, imported only
here, when a pass runs); sums that need no order (log loss, Brier, overall figures) from one matrix product; patient
resamples are drawn once, in chunks of bounded memory, and serve all of them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

MASSES = 6  # per item: positive, negative, true positive, false positive, p, soft y
BLOCK = 512  # resamples the kernel walks at once (fewer where a chunk holds fewer): wide enough to hide latency
CHUNK_BYTES = 64 * 2**20  # a chunk of resample counts: its int64 draw and two copies (the next is drawn meanwhile)


def patient_index(patients: np.ndarray) -> tuple[np.ndarray, int]:
    """Each sample's patient as 0..P-1 (patients sorted as strings, as every bootstrap here draws them), and P."""
    _, inverse = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    return inverse.ravel(), int(inverse.max()) + 1 if len(inverse) else 0


def count_chunks(n_patients: int, seed: int, sizes: list[int]) -> Iterator[np.ndarray]:
    """(size, P) draws of how often each patient is resampled, from one generator: their rows concatenated are the
    same for any split of the same total into `sizes`."""
    rng = np.random.default_rng(seed)
    for size in sizes:
        yield rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=size)


def chunk_sizes(rows: int, n_patients: int, chunk_bytes: int = CHUNK_BYTES) -> list[int]:
    """Rows per chunk: as many as fit `chunk_bytes` (counts 8 bytes each, their float64 and kernel copies 8 and 4),
    rounded down to a multiple of BLOCK, or to a power of two below it."""
    fit = max(chunk_bytes // (20 * max(n_patients, 1)), 1)
    per_chunk = fit // BLOCK * BLOCK or 1 << (fit.bit_length() - 1)
    return [min(per_chunk, rows - start) for start in range(0, rows, per_chunk)]


@dataclass
class Segment:
    """One figure set's items and, after `FusedPass.run`, its results over [point, resample 1..B]: `auc` and `ap`
    (NaN where undefined) and `cum`, the cumulative masses at each cut (cut 0: the whole segment)."""

    col: np.ndarray
    mass: np.ndarray
    flag: np.ndarray
    score: np.ndarray
    cuts: list[int] = field(default_factory=list)
    auc: np.ndarray | None = None
    ap: np.ndarray | None = None
    cum: np.ndarray | None = None

    def cut_at_scores(self, thresholds) -> list[int]:
        """Cut slots whose masses are those of the items scored >= each threshold."""
        return self._add([int(np.sum(self.score >= t)) for t in thresholds])

    def cut_at_bins(self, bins: int) -> list[int]:
        """Cut slots at the edges of equal-width bins of the score, highest first (with the whole segment's at the
        end, consecutive slots differ by one bin's masses: bins - 1 ... 0)."""
        idx = np.clip((self.score * bins).astype(int), 0, bins - 1)
        return self._add([int(np.sum(idx >= e)) for e in range(bins - 1, 0, -1)])

    def _add(self, positions: list[int]) -> list[int]:
        self.cuts += positions
        return list(range(len(self.cuts) - len(positions), len(self.cuts)))


@dataclass
class Sums:
    """Columns of per-sample terms whose weighted sums over [point, resample 1..B] `FusedPass.run` sets (`values`)."""

    per_patient: np.ndarray
    values: np.ndarray | None = None


def build_segment(col: np.ndarray, n_patients: int, mass: np.ndarray, score: np.ndarray) -> Segment:
    """Items merged per (tied score, patient), highest score first, masses summed; flags mark the first and last
    item of each tied group that holds a positive (the only groups that move AUC and AP)."""
    values, inverse = np.unique(np.asarray(score, np.float64), return_inverse=True)
    keys, item = np.unique((len(values) - 1 - inverse.ravel()) * n_patients + col, return_inverse=True)
    merged = np.zeros((len(keys), mass.shape[1]))
    for m in range(mass.shape[1]):
        merged[:, m] = np.bincount(item.ravel(), weights=mass[:, m], minlength=len(keys))
    g = keys // max(n_patients, 1)
    start, end = np.r_[True, g[1:] != g[:-1]], np.r_[g[1:] != g[:-1], True]
    ranked = (np.bincount(g, weights=merged[:, 0] > 0) > 0)[g] if len(keys) else np.zeros(0, bool)
    flag = ((start & ranked) + 2 * (end & ranked)).astype(np.uint8)
    return Segment(keys % max(n_patients, 1), merged, flag, values[len(values) - 1 - g], [len(keys)])


class FusedPass:
    """Segments over one split's samples, walked together over the same patient resamples: B = `resamples` drawn
    with `seed`, the first chunk while the segments are added, each next one while the kernel walks the last."""

    def __init__(self, patients: np.ndarray, resamples: int, seed: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.inverse, self.n_patients = patient_index(patients)
        self.segments: list[Segment] = []
        self.sums: list[Sums] = []
        self.sizes = chunk_sizes(1 + resamples, self.n_patients, chunk_bytes)
        draws = count_chunks(self.n_patients, seed, [self.sizes[0] - 1, *self.sizes[1:]])  # the point's row first
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="meddx-resamples")
        self._draw = lambda: next(draws)
        self._next = self._pool.submit(self._draw)

    def add(self, mass: np.ndarray, score: np.ndarray, rows: np.ndarray | None = None) -> Segment:
        """A segment of per-sample masses (or per-item ones, `rows` naming each item's sample), ranked by `score`."""
        col = self.inverse if rows is None else self.inverse[rows]
        segment = build_segment(col, self.n_patients, np.asarray(mass, np.float64), score)
        self.segments.append(segment)
        return segment

    def add_sums(self, columns: np.ndarray) -> Sums:
        """Weighted sums of per-sample `columns` (N, k), for figures that need no ranking."""
        per_patient = [np.bincount(self.inverse, weights=c, minlength=self.n_patients) for c in columns.T]
        self.sums.append(Sums(np.stack(per_patient, 1)))
        return self.sums[-1]

    def run(self) -> None:
        """Walk every segment over [point, resample 1..B] and set its results and the sums' (once)."""
        rank, cut, sums = self._walk_chunks()
        widths = [s.per_patient.shape[1] for s in self.sums]
        for s, offset, width in zip(self.sums, np.cumsum([0, *widths]), widths):
            s.values = sums[:, offset : offset + width]
        offsets = np.cumsum([0, *(len(s.cuts) for s in self.segments)])
        for s, segment in enumerate(self.segments):
            segment.cum = cut[:, offsets[s] : offsets[s + 1]]
            pos, neg = segment.cum[:, 0, 0], segment.cum[:, 0, 1]
            with np.errstate(invalid="ignore", divide="ignore"):
                segment.auc = np.where((pos > 0) & (neg > 0), (pos * neg - rank[:, s, 0]) / (pos * neg), np.nan)
                segment.ap = np.where((pos > 0) & (neg > 0), rank[:, s, 1] / pos, np.nan)  # no negatives: undefined

    def _walk_chunks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernel's AUC and AP sums, cut masses and the matrix product's sums, row by row over the chunks."""
        from meddx.evaluation._walk import walk  # numba: compiled (or loaded from its cache) on first use

        args, cut_offsets = _flatten(self.segments)
        rows, block = sum(self.sizes), min(BLOCK, self.sizes[0])  # a power of two below BLOCK divides a chunk
        rank = np.zeros((rows + block, len(self.segments), 2))
        cut = np.zeros((rows + block, cut_offsets[-1], MASSES))
        terms = np.hstack([s.per_patient for s in self.sums] or [np.zeros((self.n_patients, 0))])
        sums = np.empty((rows, terms.shape[1]))
        sums[0] = np.ones(self.n_patients) @ terms  # the point estimate: every patient once
        start = 0
        with self._pool:
            for i, size in enumerate(self.sizes):
                counts = self._next.result()
                if i + 1 < len(self.sizes):
                    self._next = self._pool.submit(self._draw)
                blocks = _blocked(counts, block, point=i == 0)
                end = start + blocks.shape[0] * block  # the kernel writes padding rows too; the next chunk overwrites
                walk(blocks, *args, rank[start:end], cut[start:end])
                sums[start + (i == 0) : start + size] = counts.astype(np.float64) @ terms
                start += size
        return rank[:rows], cut[:rows], sums


def _blocked(counts: np.ndarray, block: int, point: bool = False) -> np.ndarray:
    """(rows, P) counts, after a row of ones if `point`, as (blocks, P, block), rows padded with zeros: uint8 where
    every count fits (a quarter of float32's memory traffic), else float32 (exact: a count is at most P)."""
    rows = len(counts) + point
    dtype = np.uint8 if counts.max(initial=0) <= 255 else np.float32
    out = np.zeros((-(-rows // block), counts.shape[1], block), dtype)
    for i, start in enumerate(range(0, rows, block)):
        first = point if i == 0 else 0
        part = counts[start + first - point : start + block - point]
        out[i, :, :first] = 1
        out[i, :, first : first + len(part)] = part.T
    return out


def _flatten(segments: list[Segment]) -> tuple[tuple, np.ndarray]:
    """The kernel's arrays: items of all segments end to end (masses flat, each segment's as wide as it needs), segment
    offsets, and cut positions sorted per segment."""
    sizes = np.array([len(s.col) for s in segments], np.int64)
    seg = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    cut_offsets = np.r_[0, np.cumsum([len(s.cuts) for s in segments])].astype(np.int64)
    cut_pos, cut_slot = [], []
    for s, segment in enumerate(segments):
        order = np.argsort(segment.cuts, kind="stable")
        cut_pos.append(np.asarray(segment.cuts, np.int64)[order] + seg[s])
        cut_slot.append(order + cut_offsets[s])
    args = (
        np.concatenate([s.col for s in segments]).astype(np.int64),
        np.concatenate([s.mass.ravel() for s in segments]),
        np.r_[0, np.cumsum([s.mass.size for s in segments])].astype(np.int64),
        np.concatenate([s.flag for s in segments]),
        seg,
        np.array([s.mass.shape[1] for s in segments], np.int64),
        np.concatenate(cut_pos).astype(np.int64),
        np.concatenate(cut_slot).astype(np.int64),
        cut_offsets,
    )
    return args, cut_offsets
