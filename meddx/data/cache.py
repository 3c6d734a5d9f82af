"""Decoded images cached on disk once per data set and preprocessing: one memory-mapped .npy file keyed by the images'
content hashes and the decode settings, built in parallel, reused by every run, fold, seed and process, and read
row by row (the OS page cache is shared by every process on a machine; nothing needs to fit in memory)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from meddx.atomic import write_text
from meddx.data.images import load_array_file
from meddx.data.records import Record
from meddx.errors import DataError
from meddx.machine import usable_cores

CACHE_ENV = "MEDDX_CACHE_DIR"
VERSION = 1  # bump when the decoded values of the same settings change
BUILD_BATCH = 32


@dataclass
class Decoded:
    """The decoded (resized, not yet normalised) images of a data set and each record's row in them."""

    array: np.ndarray  # (rows, C, H, W) float32, memory-mapped
    rows: dict[int, int]  # id(record) -> row
    path: Path

    def rows_of(self, records: list[Record]) -> np.ndarray:
        return np.asarray([self.rows[id(r)] for r in records], dtype=np.int64)


def cache_dir() -> Path:
    """$MEDDX_CACHE_DIR, else $XDG_CACHE_HOME/meddx/decoded, else ~/.cache/meddx/decoded."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "meddx" / "decoded"


def identity(record: Record) -> str:
    """What decides a record's pixels: its content hash, or where it is and the file's size and time."""
    if record.sha1:
        return record.sha1
    try:
        st = os.stat(record.source)
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return f"{record.location}|{stamp}"


def cache_key(identities: list[str], settings: dict) -> str:
    text = json.dumps({"version": VERSION, "settings": settings, "images": identities}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def decoded_images(
    records: list[Record], decode, settings: dict, folder: Path | None = None, skipping: bool = False
) -> Decoded | None:
    """Every record decoded by `decode` (record -> float32 (C, H, W)) into the cache file of these images and
    `settings`: built now by one process (others, and later runs, wait for it and then read it), or read as it is;
    None where the cache folder cannot be written (the caller decodes as without a cache: lazily when large);
    `skipping`: unreadable files were left out already, so a failure here is not one that flag cures."""
    import filelock

    keys = [identity(r) for r in records]
    first = dict(zip(reversed(keys), reversed(records)))  # each image's first record
    unique = sorted(first)
    row_of = {k: i for i, k in enumerate(unique)}
    rows = {id(r): row_of[k] for r, k in zip(records, keys)}
    folder = Path(folder) if folder else cache_dir()
    path = folder / f"{cache_key(unique, settings)}.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(f"{path}.lock"):
            if not _valid(path, len(unique)):
                _build(path, [first[k] for k in unique], decode, settings, skipping)
    except OSError as e:  # a read-only or full disk: no cache, images decoded as without one, said once
        warnings.warn(f"decoded-image cache off ({folder}: {e.strerror or e}); decoding without it", stacklevel=2)
        return None
    load_array_file.cache_clear()  # array files read for the build are not kept whole in memory
    return Decoded(np.load(path, mmap_mode="r"), rows, path)


def _valid(path: Path, rows: int) -> bool:
    """A finished cache file of the expected rows (a torn or foreign file is rebuilt)."""
    try:
        return np.load(path, mmap_mode="r").shape[0] == rows
    except (OSError, ValueError):
        return False


class _Decoding(Dataset):
    """The images to decode, for a DataLoader's worker processes; a bad file comes back as its one-line message."""

    def __init__(self, records: list[Record], decode):
        self.records, self.decode = records, decode

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        try:
            return np.ascontiguousarray(self.decode(self.records[i]), dtype=np.float32)
        except DataError as e:
            return str(e)


def _collate(items: list):
    bad = [x for x in items if isinstance(x, str)]
    return bad or np.stack(items)


def _build(path: Path, records: list[Record], decode, settings: dict, skipping: bool = False) -> None:
    """Decode in parallel (a DataLoader's workers, in order) into a temporary file, then rename it into place."""
    from meddx.logs import progress

    first = np.asarray(decode(records[0]), dtype=np.float32)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(records), *first.shape))
    workers = min(usable_cores(), 8)
    loader = DataLoader(_Decoding(records, decode), batch_size=BUILD_BATCH, num_workers=workers if len(records) >= 256
                        else 0, collate_fn=_collate)  # fmt: skip
    try:
        start, bad = 0, []
        for batch in progress(loader, f"decoding {len(records)} images into the cache", least=16):
            if isinstance(batch, list):  # every unreadable file is named at once, not one per attempt
                bad += batch
            else:
                out[start : start + len(batch)] = batch
            start += len(batch)
        if bad:
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            skip = "fix or remove them" + ("" if skipping else ", or --skip-unreadable leaves them out")
            many = f"{len(bad)} image(s) cannot be read ({skip}): {shown}"
            one = f"{bad[0]} ({'fix or remove it' if skipping else '--skip-unreadable leaves such files out'})"
            raise DataError(many if len(bad) > 1 else one)
        out.flush()
        del out
        os.replace(tmp, path)
        meta = {"shape": [len(records), *first.shape], "settings": settings, "version": VERSION}
        write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, default=str))
    finally:
        tmp.unlink(missing_ok=True)


def _phash_db():
    """The perceptual hashes seen before, by SHA-1 (SQLite: safe for several processes at once); None if unusable."""
    import sqlite3

    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(cache_dir() / "phash.sqlite", timeout=60)
        db.execute("CREATE TABLE IF NOT EXISTS phash (sha1 TEXT PRIMARY KEY, phash TEXT NOT NULL)")
        return db
    except (OSError, sqlite3.Error):
        return None


def stored_phashes(sha1s: list[str]) -> dict[str, str]:
    """The stored perceptual hashes of these files (those seen before)."""
    db = _phash_db() if sha1s else None
    if db is None:
        return {}
    with db:
        found = {}
        for start in range(0, len(sha1s), 500):
            part = sha1s[start : start + 500]
            rows = db.execute(f"SELECT sha1, phash FROM phash WHERE sha1 IN ({','.join('?' * len(part))})", part)
            found.update(rows.fetchall())
    db.close()
    return found


def store_phashes(hashes: dict[str, str]) -> None:
    """Keep these perceptual hashes for later runs (silently nothing where the cache folder is not writable)."""
    db = _phash_db() if hashes else None
    if db is None:
        return
    import sqlite3

    try:
        with db:
            db.executemany("INSERT OR REPLACE INTO phash VALUES (?, ?)", hashes.items())
    except sqlite3.Error:
        pass
    db.close()
