"""Self-supervised pretraining on unlabelled X-rays: the reader, the held-out images, SimCLR lowering its loss, and
its encoder loading through train.init_from."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import meddx
from meddx.data.unlabelled import read_unlabelled
from meddx.errors import DataError
from meddx.training.contrastive import held_out, not_held

from conftest import need, run_cli

NIH = "nih_chestxray14_64px_binary"


def test_unlabelled_images_from_folders_arrays_and_csvs(data_dir, tmp_path):
    folder = need(data_dir, NIH)
    assert len(read_unlabelled([str(folder)])) == 800  # every PNG, class folders or not
    assert len(read_unlabelled(["pneumoniamnist"])) == 4690 + 524 + 624  # every *images array of the file
    csv = need(data_dir, "nih_chestxray14_course_small/train-small.csv")
    with pytest.raises(DataError, match=r"row 2: 1000 of 1000 images named in train-small.csv do not exist"):
        read_unlabelled([str(csv)])
    held = held_out([str(folder)])
    # every image of the val and test patients: the official valid folder (200), the test carved from train by patient
    # (48) and the train images of the 15 patients that valid shares (67)
    assert len(held) == 200 + 48 + 67
    kept = read_unlabelled([str(folder)], exclude=held)
    assert len(kept) == 800 - 315 and not {r.source for r in kept} & set(held)
    copy = tmp_path / "copy"  # the same images at another path: `--exclude` named the original folder
    shutil.copytree(folder / "valid", copy / "valid")
    assert len(read_unlabelled([str(copy)])) == 200 and not not_held(read_unlabelled([str(copy)]), held)


@pytest.mark.slow
def test_simclr_lowers_its_loss_and_its_encoder_fine_tunes(data_dir, tmp_path):
    folder = str(need(data_dir, NIH))
    proc = run_cli(
        "pretrain",
        "--data",
        folder,
        "--exclude",
        folder,
        "--epochs",
        "6",
        "-o",
        str(tmp_path / "ssl"),
        "--set",
        "train.progress_bar=false",
        "--set",
        "pretrain.batch_size=64",
        "--set",
        "data.image_size=32",
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "ssl" / "pretrain.json").read_text())
    assert info["images"] == 485 and info["excluded_images"] == info["held_out_images"] == 315  # val/test patients
    assert info["final_val_ntxent"] < 0.9 * info["initial_val_ntxent"]
    assert "in eval mode" not in proc.stderr  # the first validate() had left every layer in eval mode for fit()
    assert "litlogger" not in proc.stdout + proc.stderr  # Lightning's advertisement: to the log, not the terminal
    encoder = torch.load(tmp_path / "ssl" / "encoder.pt", weights_only=True)
    means = [v for k, v in encoder.items() if k.endswith("running_mean")]
    assert means and all(v.abs().sum() > 0 for v in means)  # BatchNorm learnt the batches' statistics
    run = meddx.train(
        {
            "data": {"path": folder, "image_size": 32},
            "output_dir": str(tmp_path),
            "name": "ft",
            "train": {"init_from": str(tmp_path / "ssl" / "encoder.pt"), "max_epochs": 1, "progress_bar": False},
            "plan": {"enabled": False},
            "evaluate": {"bootstrap": 0},
        }
    )
    loaded = run.training["init_from"]
    assert loaded["loaded"] > 0 and loaded["skipped_head"] == []  # the encoder has no head
    assert loaded["adapted"] == ["features.0.0.0.weight: 1 -> 3 channels"]  # grey filters spread over RGB
    assert (
        f"initialised from {tmp_path / 'ssl' / 'encoder.pt'}, a small_cnn encoder ({loaded['loaded']} tensors, a new "
        "head); first conv adapted (features.0.0.0.weight: 1 -> 3 channels)" in (run.path / "report.md").read_text()
    )
