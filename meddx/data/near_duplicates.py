"""Near-duplicate images on two sides of a split: re-encoded, resized or re-windowed copies that byte hashes miss.

Candidates come from a perceptual hash (imagededup's PHash, 64 bits) within MAX_DISTANCE bits (imagededup's default);
each candidate pair is confirmed by the correlation of 32 px grey thumbnails: at least MIN_CORRELATION, or at least
LOOSE_CORRELATION for hashes within LOOSE_DISTANCE that are each other's best match by LOOSE_MARGIN (copies of either
image are no rivals; among LOOSE_MIN_IMAGES images or more, below which any margin is wide). Measured on the
shared data: copies (resized 1.5-2x and saved as JPEG 70, JPEG 60, downsized to 2/3) kept a correlation of at least
0.9995 on DaTscan and Kermany X-rays but moved the hash up to 6 bits on low-count DaTscan; among the 40,985 candidate
pairs of distinct DaTscan slices (smooth look-alikes) the highest correlation was 0.9974, none of them each other's
best match by 0.01 at 0.99 or more; among Kermany's, PneumoniaMNIST's and NIH's distinct pairs below 0.986.
BreastMNIST's official splits hold 37 more pairs of one ultrasound frame at 0.99-0.998 (pixels 6 grey levels apart
at most, against 28 or more for 95% of distinct pairs), found by the looser rule. Missed: crops (a 5% crop moved the
hash 6-12 bits and the correlation to 0.75-0.90; `crop_copies` looks for those). Hashes are kept by SHA-1 in the cache
folder, so a data set's second run decodes nothing for this check.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import numpy as np
from PIL import Image

from meddx.data.cache import store_phashes, stored_phashes
from meddx.data.images import read_pixels
from meddx.data.records import Record
from meddx.errors import DataError
from meddx.logs import progress

MAX_DISTANCE, MIN_CORRELATION, THUMB = 10, 0.998, 32
# below MIN_CORRELATION a pair counts when its hashes are close and each image is the other's best match by a margin:
# BreastMNIST's pairs at 0.99-0.998 lie 0-8 bits apart, DaTscan's look-alikes mostly 6-10, none with the margin
LOOSE_CORRELATION, LOOSE_MARGIN, LOOSE_DISTANCE = 0.99, 0.01, 4
LOOSE_MIN_IMAGES = 100  # fewer: a look-alike has few neighbours, so any margin is wide (40 DaTscan slices: 2 pairs)
SEARCH_BLOCK = 1024  # rows of the distance matrix at a time (8 MB of distances for 1,024 x 8,192 hashes)
RULE = (
    f"perceptual hash within {MAX_DISTANCE} of 64 bits, confirmed by {THUMB} px correlation >= {MIN_CORRELATION}, or "
    f">= {LOOSE_CORRELATION} within {LOOSE_DISTANCE} bits for each other's best match {LOOSE_MARGIN} above the next"
)


def pixels_or_none(record: Record) -> tuple[np.ndarray, str] | None:
    """The record's pixels and layout (`read_pixels`), or None for a token sequence or a file not readable here."""
    if record.tokens is not None:
        return None
    try:
        return read_pixels(record)
    except (DataError, OSError):
        return None


def grey(record: Record) -> np.ndarray | None:
    """The record's image as one 2-D uint8 grey plane (colour averaged, a volume's middle slice); None if unreadable."""
    if (read := pixels_or_none(record)) is None:
        return None
    pixels, layout = read
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(-1) if layout == "hwc" else a[a.shape[0] // 2]
    lo, hi = float(a.min()), float(a.max())
    return np.round(255 * (a - lo) / max(hi - lo, 1e-6)).astype(np.uint8)


def _thumb(plane: np.ndarray) -> np.ndarray:
    t = np.asarray(Image.fromarray(plane).resize((THUMB, THUMB), Image.BILINEAR), np.float64).ravel()
    return (t - t.mean()) / (t.std() + 1e-9)


class _Thumbs(dict):
    """Thumbnails by record id, made on first use (None for an unreadable image)."""

    def __init__(self, by_id: dict[str, Record]):
        super().__init__()
        self.by_id = by_id

    def __missing__(self, key: str) -> np.ndarray | None:
        plane = grey(self.by_id[key])
        self[key] = None if plane is None else _thumb(plane)
        return self[key]

    def corr(self, a: str, b: str) -> float | None:
        ta, tb = self[a], self[b]
        return None if ta is None or tb is None else float(np.mean(ta * tb))


def _confirmed(thumbs: _Thumbs, pairs: list, hashes: dict[str, str], candidates: list, loose: bool) -> list[tuple]:
    """The `pairs` that are one image: correlation MIN_CORRELATION or more; with `loose` (enough images for a margin
    to mean something), also LOOSE_CORRELATION or more with hashes within LOOSE_DISTANCE where each is the other's
    best match among its `candidates` by LOOSE_MARGIN, copies of either image not counted as rivals (smooth
    look-alikes of a data set have many near neighbours, further hashes and no margin)."""
    neighbours: dict[str, set[str]] = {}
    for a, b in candidates:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    known: dict[frozenset, float | None] = {}

    def corr(a: str, b: str) -> float | None:  # each pair's correlation once, however many margins it enters
        key = frozenset((a, b))
        if key not in known:
            known[key] = thumbs.corr(a, b)
        return known[key]

    is_copy = lambda a, b: (c := corr(a, b)) is not None and c >= MIN_CORRELATION  # noqa: E731
    scored = [(a, b, c) for a, b in pairs if (c := corr(a, b)) is not None and c >= LOOSE_CORRELATION]
    close = lambda a, b: (int(hashes[a], 16) ^ int(hashes[b], 16)).bit_count() <= LOOSE_DISTANCE  # noqa: E731
    candidates_loose = [(a, b, c) for a, b, c in scored if loose and c < MIN_CORRELATION and close(a, b)]

    def rival(key: str, other: str) -> float:  # the best match of `key` that is neither `other` nor a copy of either
        rivals = (c for n in neighbours.get(key, ()) if n != other and (c := corr(key, n)) is not None
                  and not is_copy(n, other) and not is_copy(n, key))  # fmt: skip
        return max(rivals, default=-1.0)

    margin = lambda a, b, c: c - max(rival(a, b), rival(b, a)) >= LOOSE_MARGIN  # noqa: E731
    return [(a, b) for a, b, c in scored if c >= MIN_CORRELATION] + [
        (a, b) for a, b, c in candidates_loose if margin(a, b, c)
    ]


def _hasher():
    """imagededup's PHash; its modules' own stderr handlers (INFO lines at every search) are removed, so their
    messages go through the root logger (warnings only reach the terminal)."""
    from imagededup.methods import PHash

    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("imagededup") and isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.setLevel(logging.WARNING)
    return PHash(verbose=False)


def phash(plane: np.ndarray) -> str:
    """imagededup's 64-bit perceptual hash (hex) of a grey plane."""
    return _hasher().encode_image(image_array=plane)


def hash_records(records: Iterable[Record]) -> None:
    """Set `record.phash` for every readable image record not hashed yet; hashes of files seen before (by SHA-1) come
    from the cache folder's store instead of decoding the image again."""
    records = list(records)
    known = stored_phashes([r.sha1 for r in records if r.phash is None and r.sha1])
    for r in records:
        r.phash = r.phash or known.get(r.sha1)
    todo = [r for r in records if r.phash is None]
    for r in progress(todo, f"looking for near duplicates in {len(todo)} images"):
        if (plane := grey(r)) is not None:
            r.phash = phash(plane)
    store_phashes({r.sha1: r.phash for r in todo if r.sha1 and r.phash})


def _candidates(hashes: dict[str, str]) -> list[tuple[str, str]]:
    """Pairs of keys whose 64-bit hashes lie within MAX_DISTANCE bits: XOR and popcount over blocks of rows (numpy),
    the pairs imagededup's search finds, in 0.1 s rather than 6-18 s for 5,900 hashes here."""
    keys = list(hashes)
    codes = np.array([int(hashes[k], 16) for k in keys], dtype=np.uint64)
    pairs = set()
    for start in range(0, len(codes), SEARCH_BLOCK):
        near = np.bitwise_count(codes[start : start + SEARCH_BLOCK, None] ^ codes[None, :]) <= MAX_DISTANCE
        for a, b in zip(*np.nonzero(near)):
            if start + a < b:
                pairs.add(tuple(sorted((keys[start + a], keys[b]))))
    return sorted(pairs)


def near_duplicate_pairs(records: list[Record], exact: set[frozenset[str]]) -> list[tuple[Record, Record]]:
    """Confirmed near-duplicate pairs whose records sit in different splits (byte-identical pairs in `exact` left
    out: the SHA-1 check names them)."""
    hash_records(records)
    by_id = {r.id: r for r in records if r.phash}
    hashes = {i: r.phash for i, r in by_id.items()}
    candidates = _candidates(hashes)
    across = [(a, b) for a, b in candidates if by_id[a].split != by_id[b].split and frozenset((a, b)) not in exact]
    loose = len(by_id) >= LOOSE_MIN_IMAGES
    return [(by_id[a], by_id[b]) for a, b in _confirmed(_Thumbs(by_id), across, hashes, candidates, loose)]


def record_at(location: str) -> Record:
    """A label-less record for a split.csv `source` (a file, or `file::key[index]` inside an array file)."""
    m = re.fullmatch(r"(.+)::(.+)\[(\d+)\]", location)
    if m:
        return Record(location, location, m.group(1), np.zeros(0), index=int(m.group(3)), key=m.group(2))
    return Record(location, location, location, np.zeros(0))


def near_training(records: list[Record], training: dict[str, str]) -> tuple[list[tuple[Record, str]], int]:
    """New records that are near-duplicates of a run's training images (`training`: source location -> phash), each
    once, confirmed by correlation with the training file; and how many candidates could not be confirmed because
    the training file is not readable here (moved, or named relative to another folder): never called copies."""
    hash_records(records)
    keys = {f"new:{i}": r.phash for i, r in enumerate(records) if r.phash}
    keys.update({f"old:{loc}": h for loc, h in training.items()})
    found: dict[str, tuple[Record, str]] = {}
    by_key = {f"new:{i}": r for i, r in enumerate(records)} | {f"old:{loc}": record_at(loc) for loc in training}
    thumbs = _Thumbs(by_key)  # each image read once, however many candidate pairs it is in
    across = [(a, b) if a.startswith("new:") else (b, a) for a, b in _candidates(keys) if a[:4] != b[:4]]
    unconfirmed = {records[int(new[4:])].id for new, old in across if thumbs[old] is None}
    loose = len(training) >= LOOSE_MIN_IMAGES  # margins among the training images
    for new, old in _confirmed(thumbs, across, keys, across, loose):  # best matches among the other side's images
        record = records[int(new[4:])]
        found.setdefault(record.id, (record, old[4:]))
    return list(found.values()), len(unconfirmed - set(found))
