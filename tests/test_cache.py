"""The decoded-image cache: decoded once per data set and settings, reused by later runs and processes, the same
pixels as decoding without it; a torn file rebuilt, an unwritable folder a warning, a bad image one line; perceptual
hashes kept by SHA-1, and the near-duplicate search equal to imagededup's."""

from __future__ import annotations

import multiprocessing
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from meddx.config import as_config
from meddx.data.cache import decoded_images
from meddx.data.records import Record
from meddx.errors import DataError
from meddx.training.datamodule import RunDataModule

from conftest import need

SETTINGS = {"image_size": (8, 8)}


def _records(n: int, folder=None) -> list[Record]:
    return [
        Record(f"r{i}", f"p{i}", str(folder / f"{i}.png") if folder else f"mem{i}", np.zeros(1), sha1=f"h{i % (n - 1)}")
        for i in range(n)
    ]  # fmt: skip  (the last record repeats the first image)


class _Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, record: Record) -> np.ndarray:
        self.calls += 1
        return np.full((1, 8, 8), float(record.sha1[1:]), dtype=np.float32)


def test_decoded_once_then_reused(tmp_path):
    records, decode = _records(10), _Counting()
    first = decoded_images(records, decode, SETTINGS, tmp_path)
    assert decode.calls == 1 + 9  # the shape probe and each distinct image once (the copy shares a row)
    again = decoded_images(records, decode, SETTINGS, tmp_path)
    assert decode.calls == 10 and again.path == first.path  # nothing decoded the second time
    np.testing.assert_array_equal(again.array[again.rows_of(records)][:, 0, 0, 0], [*range(9), 0])
    other = decoded_images(records, decode, {"image_size": (16, 16)}, tmp_path)
    assert other.path != first.path  # other settings, another file


def test_a_torn_cache_file_is_rebuilt(tmp_path):
    records, decode = _records(5), _Counting()
    path = decoded_images(records, decode, SETTINGS, tmp_path).path
    path.write_bytes(path.read_bytes()[:100])  # a file cut short, as a full disk would leave it
    rebuilt = decoded_images(records, decode, SETTINGS, tmp_path)
    assert decode.calls == 2 * 5 and rebuilt.array.shape == (4, 1, 8, 8)


def test_an_unwritable_cache_folder_decodes_as_without_a_cache(tmp_path):
    """No cache, one warning, nothing decoded here: the data module decodes as it would without one (in memory when
    the images fit, item by item when not), never the whole set into memory."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    decode = _Counting()
    with pytest.warns(UserWarning, match="decoded-image cache off"):
        got = decoded_images(_records(5), decode, SETTINGS, blocker / "cache")
    assert got is None and decode.calls == 0


def _build_in_child(folder, queue) -> None:
    got = decoded_images(_records(40), _Counting(), SETTINGS, folder)
    queue.put(str(got.path))


def test_processes_started_together_share_one_build(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(tmp_path, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    paths = {queue.get(timeout=5) for _ in procs}
    assert len(paths) == 1 and sorted(f.suffix for f in tmp_path.iterdir()) == [".json", ".lock", ".npy"]


def test_a_bad_image_in_a_parallel_build_is_one_line(tmp_path):
    """Workers decode a large set; a broken file is named in one line, not a worker's traceback."""
    from meddx.data.tensors import Preprocess

    for i in range(300):
        Image.fromarray(np.full((8, 8), i % 255, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "150.png").write_bytes(b"not a png")
    records = [Record(f"r{i}", f"p{i}", str(tmp_path / f"{i}.png"), np.zeros(1), sha1=f"h{i}") for i in range(300)]
    prep = Preprocess(channels=1, image_size=(8, 8), normalize="none")
    with pytest.raises(DataError) as e:
        decoded_images(records, prep.raw, SETTINGS, tmp_path / "cache")
    assert "150.png" in str(e.value) and "Traceback" not in str(e.value) and "\n" not in str(e.value)
    for bad in (20, 290):  # three broken files are named at once, not one per attempt
        (tmp_path / f"{bad}.png").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"^3 image\(s\) cannot be read \(fix or remove them, or --skip-unreadable leaves them out\): "
    ) as e:
        decoded_images(records, prep.raw, SETTINGS, tmp_path / "cache")
    assert all(f"/{n}.png: not a readable image" in str(e.value) for n in (20, 150, 290)) and "\n" not in str(e.value)
    with pytest.raises(DataError) as e:  # given --skip-unreadable already: the flag is not advised again
        decoded_images(records, prep.raw, SETTINGS, tmp_path / "cache", skipping=True)
    assert str(e.value).startswith("3 image(s) cannot be read (fix or remove them): ") and "--skip" not in str(e.value)


@pytest.mark.parametrize("devices", [1, 2])
def test_the_cache_gives_the_pixels_decoding_gives(data_dir, devices):
    """Training tensors with the cache equal those decoded without it; several processes read its mapped rows."""
    npz = need(data_dir, "medmnist/breastmnist.npz")

    def setup(cache: bool) -> RunDataModule:
        data = {"path": str(npz), "cache": cache}
        split = {"on_duplicate_images": "drop_from_train"}
        cfg = as_config({"data": data, "plan": {"enabled": False}, "train": {"devices": devices}, "split": split})
        data = RunDataModule(cfg)
        data.setup()
        return data

    plain, cached = setup(False), setup(True)
    assert plain.prep.mean == pytest.approx(cached.prep.mean, abs=1e-12)
    for split, ds in plain.datasets.items():
        other = cached.datasets[split]
        assert (other.images is None) == (devices > 1)  # one mapped copy for all processes, else in memory
        got = torch.stack([other[i][0] for i in range(len(other))])
        torch.testing.assert_close(got, ds.images, rtol=0, atol=0)


def test_perceptual_hashes_are_kept_and_the_search_matches_imagededup(monkeypatch):
    import meddx.data.near_duplicates as nd

    rng = np.random.default_rng(0)
    hashes = {f"k{i}": format(int(rng.integers(0, 2**63)), "016x") for i in range(400)}
    for i in range(0, 40, 3):  # planted neighbours at 1-10 bits
        hashes[f"n{i}"] = format(int(hashes[f"k{i}"], 16) ^ ((1 << (i % 10 + 1)) - 1), "016x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = nd._hasher().find_duplicates(encoding_map=hashes, max_distance_threshold=nd.MAX_DISTANCE)
    theirs = sorted({tuple(sorted((a, b))) for a, others in found.items() for b in others})
    assert nd._candidates(hashes) == theirs and len(theirs) >= 14

    records = [Record(f"r{i}", f"p{i}", f"f{i}", np.zeros(1), sha1=f"sha-{i}") for i in range(5)]
    monkeypatch.setattr(nd, "grey", lambda r: np.full((16, 16), int(r.id[1:]) * 40, np.uint8))
    nd.hash_records(records)
    monkeypatch.setattr(nd, "grey", lambda r: pytest.fail("decoded again"))
    again = [Record(r.id, r.patient_id, r.source, r.labels, sha1=r.sha1) for r in records]
    nd.hash_records(again)
    assert [r.phash for r in again] == [r.phash for r in records]


def test_the_fingerprint_skips_unreadable_sampled_images_so_the_decoding_names_them_all(tmp_path):
    """`meddx plan` stopped on the first unreadable image its sample met; fixed, it stopped on the next. The sample
    now counts them and goes on (decoding every image then names all of them); a sample of none readable stops."""
    from meddx.data.fingerprint import image_statistics

    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"")
    records = [Record(f"r{i}", f"p{i}", str(tmp_path / f"{i}.png"), np.zeros(1)) for i in range(6)]
    stats = image_statistics(records)
    assert stats["unreadable"] == 1 and stats["sampled"] == 5 and stats["height"]["median"] == 8
    with pytest.raises(DataError, match="1 image\\(s\\) sampled and none can be read"):
        image_statistics(records[2:3])
