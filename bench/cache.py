"""A decoded-image cache, three ways, against decoding every epoch: litdata (optimize + StreamingDataset), MONAI's
PersistentDataset, and one memory-mapped .npy file. Build time, and samples/s of a second epoch through a DataLoader
(batch 64, shuffled), on the Kermany chest X-ray folder at 224 px, grey.

    .venv/bin/pip install litdata==0.2.76 monai==1.6.1   # the two peers, not in requirements.lock
    .venv/bin/python bench/cache.py [--limit 0] [--workers 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from meddx.config import DataConfig
from meddx.data.readers import read_dataset
from meddx.data.tensors import ImageDataset, Preprocess

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

SIZE = 224
PREP = Preprocess(channels=1, image_size=(SIZE, SIZE), normalize="none")


def records(limit: int) -> list:
    root = Path(os.environ.get("MEDDX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ds = read_dataset(DataConfig(path=str(root / "chest_xray_pneumonia_224")))
    return ds.records[:limit] if limit else ds.records


def decode(record) -> np.ndarray:
    return PREP.raw(record).astype(np.float32)


def _decode_into(args) -> None:
    path, start, chunk = args
    out = np.load(path, mmap_mode="r+")
    for i, r in enumerate(chunk):
        out[start + i] = decode(r)
    out.flush()


def build_memmap(recs: list, folder: Path, workers: int) -> Path:
    path = folder / "decoded.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(recs), 1, SIZE, SIZE)).flush()
    step = -(-len(recs) // (workers * 4))
    jobs = [(path, s, recs[s : s + step]) for s in range(0, len(recs), step)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_into, jobs))
    return path


class Memmapped(Dataset):
    def __init__(self, path: Path, labels: torch.Tensor):
        self.array, self.labels = np.load(path, mmap_mode="r"), labels

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.array(self.array[i])), self.labels[i]


def _litdata_item(record) -> dict:
    return {"image": torch.from_numpy(decode(record)), "label": torch.tensor(record.labels, dtype=torch.float32)}


def build_litdata(recs: list, folder: Path, workers: int) -> Path:
    from litdata import optimize

    out = folder / "litdata"
    optimize(fn=_litdata_item, inputs=recs, output_dir=str(out), chunk_bytes="64MB", num_workers=workers,
             verbose=False, reorder_files=False, mode="overwrite")  # fmt: skip
    return out


class _Decode:
    """MONAI's deterministic transform: the cached step."""

    def __call__(self, item: dict) -> dict:
        return {"image": decode(item["record"]), "label": item["label"]}


def _item_hash(item: dict) -> bytes:
    """MONAI's cache file name for an item (module level: litdata's build switches workers to spawn, which pickles)."""
    return hashlib.sha1(str(item["key"]).encode()).hexdigest().encode()


def monai_dataset(recs: list, folder: Path):
    from monai.data import PersistentDataset

    items = [{"record": r, "label": np.asarray(r.labels, dtype=np.float32), "key": r.sha1 or r.id} for r in recs]
    return PersistentDataset(items, transform=_Decode(), cache_dir=str(folder / "monai"), hash_func=_item_hash)


def epoch_rate(loader) -> float:
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch["image"])
    return n / (time.perf_counter() - start)


def measure(kind: str, recs: list, labels: torch.Tensor, folder: Path, workers: int) -> dict:
    """Build seconds (0 for decoding every epoch) and samples/s of the second epoch."""
    start = time.perf_counter()
    if kind == "decode every epoch":
        ds = ImageDataset(recs, PREP, preload=False)
    elif kind == "memmap .npy":
        ds = Memmapped(build_memmap(recs, folder, max(workers, 2)), labels)
    elif kind == "MONAI PersistentDataset":
        ds = monai_dataset(recs, folder)
        list(DataLoader(ds, batch_size=64, num_workers=2, collate_fn=len, multiprocessing_context="fork"))  # build
    else:
        from litdata import StreamingDataLoader, StreamingDataset

        out = build_litdata(recs, folder, max(workers, 2))
        ds = StreamingDataset(str(out), shuffle=True)
    build = time.perf_counter() - start
    if kind == "litdata StreamingDataset":
        from litdata import StreamingDataLoader

        loader = StreamingDataLoader(ds, batch_size=64, num_workers=workers)
    else:
        loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers)
    epoch_rate(loader)
    return {"build_s": build, "samples_per_s": epoch_rate(loader)}


KINDS = ["decode every epoch", "memmap .npy", "MONAI PersistentDataset", "litdata StreamingDataset"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers while reading")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    recs = records(args.limit)
    labels = torch.from_numpy(np.stack([r.labels for r in recs]).astype(np.float32))
    order, results = random.Random(0), {k: [] for k in KINDS}
    for rep in range(args.repeats):
        kinds = KINDS[:]
        order.shuffle(kinds)
        for kind in kinds:
            folder = Path(tempfile.mkdtemp(prefix="meddx-cache-bench-"))
            try:
                results[kind].append(measure(kind, recs, labels, folder, args.workers))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(f"repeat {rep} {kind}: {results[kind][-1]}", flush=True)
    write(results, recs, args)


def write(results: dict, recs: list, args) -> None:
    base = np.median([r["samples_per_s"] for r in results["decode every epoch"]])
    lines = []
    for kind, rows in results.items():
        rate = [r["samples_per_s"] for r in rows]
        build = np.median([r["build_s"] for r in rows])
        lines.append(f"| {kind} | {build:.1f} | {np.median(rate):.0f} ({min(rate):.0f}-{max(rate):.0f}) | "
                     f"{np.median(rate) / base:.1f}x |")  # fmt: skip
    gb = len(recs) * SIZE * SIZE * 4 / 1e9
    body = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()} with {os.cpu_count()} cores, torch {torch.__version__},
by `.venv/bin/python bench/cache.py --limit {args.limit} --workers {args.workers} --repeats {args.repeats}`.
Kermany chest X-ray folder (`chest_xray_pneumonia_224`, {len(recs)} JPEGs) decoded to 224 x 224 grey float32
({gb:.2f} GB decoded); second-epoch samples/s through a shuffled loader, batch 64, {args.workers} loader workers;
builds use 2 processes; the {args.repeats} repeats run the four kinds in a random order.

| kind | build (s) | epoch 2 samples/s, median (min-max) | against decoding every epoch |
|---|---|---|---|
{chr(10).join(lines)}
"""
    print(body)
    print(json.dumps(results))
    print(f"wrote {write_section('cache', 'Decoded-image cache: litdata, MONAI, a memory-mapped file', body)}")


if __name__ == "__main__":
    main()
