"""Transfer learning and regularisation: freezing, pretrained weights, mixup, label smoothing, unfreezing (issue 6)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from meddx.errors import ConfigError
from meddx.models import create_model
from meddx.models.finetune import blocks, describe, freeze_all_but, head_name, load_pretrained

from conftest import need, run_cli


@pytest.mark.parametrize("name,in_chans", [("small_cnn", 1), ("resnet18", 1), ("efficientnet_b0", 3)])
def test_frozen_set_is_exactly_what_model_info_lists(name, in_chans):
    model = create_model(name, in_chans, 2)
    n_blocks = len(blocks(model)) - 1
    all_params = {n for n, _ in model.named_parameters()}
    assert set().union(*(b.params for b in blocks(model))) == all_params  # every parameter sits in exactly one block
    assert sum(len(b.params) for b in blocks(model)) == len(all_params)
    for depth in [0, 1, 2, "all"]:
        trainable = set(freeze_all_but(model, depth))
        assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}
        rows = describe(model, depth)
        listed = {n for r, b in zip(rows, blocks(model)) if r["trainable"] for n in b.params}
        assert trainable == listed
        expected = n_blocks if depth == "all" else depth
        assert sum(r["trainable"] for r in rows if r["block"] != "head") == expected
        assert sum(r["params"] for r in rows if r["trainable"]) == sum(
            p.numel() for p in model.parameters() if p.requires_grad
        )
    assert [r["name"] for r in describe(model)][-1] == head_name(model)


def test_model_info_cli_lists_blocks():
    proc = run_cli("model-info", "small_cnn", "--in-chans", "1", "--finetune-depth", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["1", "features.2"] and line.split()[-1] == "yes" for line in lines)
    assert any(line.split()[:2] == ["3", "features.0"] and line.split()[-1] == "no" for line in lines)
    assert any(line.split()[0] == "head" and line.split()[-1] == "yes" for line in lines)


def test_load_pretrained_skips_the_head_and_names_other_mismatches(tmp_path):
    src = create_model("small_cnn", 1, 4)
    torch.save(src.state_dict(), tmp_path / "src.pt")
    dst = create_model("small_cnn", 1, 1)
    head_before = dst.head[-1].weight.detach().clone()
    report = load_pretrained(dst, tmp_path / "src.pt")
    assert sorted(report["skipped_head"]) == ["head.2.bias", "head.2.weight"]
    for k, v in src.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(dst.state_dict()[k], v), k
    assert torch.equal(dst.head[-1].weight, head_before)  # head freshly initialised, not taken from the file
    with pytest.raises(ConfigError, match=r"features\.0\.0\.0\.weight"):  # a wider body: mismatch named
        wide = create_model("small_cnn_wide", 1, 4)
        torch.save(wide.state_dict(), tmp_path / "wide.pt")
        load_pretrained(create_model("small_cnn", 1, 1), tmp_path / "wide.pt")
    state = src.state_dict()
    del state["features.1.0.1.running_mean"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"missing: features\.1\.0\.1\.running_mean"):
        load_pretrained(create_model("small_cnn", 1, 1), tmp_path / "missing.pt")


def test_three_channel_weights_adapted_to_one_channel_like_timm(tmp_path):
    from timm.models import adapt_input_conv

    src = create_model("resnet18", 3, 1000)  # stands in for ImageNet weights the user downloaded
    torch.save(src.state_dict(), tmp_path / "imagenet.pt")
    dst = create_model("resnet18", 1, 2)
    report = load_pretrained(dst, tmp_path / "imagenet.pt")
    assert report["adapted"] == ["conv1.weight: 3 -> 1 channels"]
    expected = adapt_input_conv(1, src.conv1.weight.detach())
    torch.testing.assert_close(dst.conv1.weight.detach(), expected)
    torch.testing.assert_close(dst.conv1.weight.detach(), src.conv1.weight.detach().sum(1, keepdim=True))
    torch.testing.assert_close(dst.layer4[1].conv2.weight, src.layer4[1].conv2.weight)


def test_grey_weights_spread_over_three_channels(tmp_path):
    """A one-channel encoder (pretrained on X-rays) on RGB input: each grey filter split evenly over R, G and B, so a
    grey image stored as RGB gives the same first-layer response."""
    src = create_model("small_cnn", 1, 1)
    torch.save(src.state_dict(), tmp_path / "grey.pt")
    dst = create_model("small_cnn", 3, 1)
    assert load_pretrained(dst, tmp_path / "grey.pt")["adapted"] == ["features.0.0.0.weight: 1 -> 3 channels"]
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(dst.features[0][0][0](x.repeat(1, 3, 1, 1)), src.features[0][0][0](x))


def test_mixup_on_a_multilabel_batch():
    from meddx.training.augment import mixup_batch

    torch.manual_seed(0)
    x = torch.randn(8, 1, 6, 6)
    y = torch.tensor(
        [[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=torch.float32
    )
    y[3, 2] = float("nan")  # unknown label stays unknown in both mixed rows
    xm, ym, lam, perm = mixup_batch(x, y, alpha=0.4)
    assert 0 < lam < 1 and sorted(perm.tolist()) == list(range(8))
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[perm])
    known = ~torch.isnan(ym)
    torch.testing.assert_close(ym[known], (lam * y + (1 - lam) * y[perm])[known])
    assert torch.isnan(ym[3, 2]) and torch.isnan(ym[(perm == 3).nonzero().item(), 2])
    assert ((ym[known] >= 0) & (ym[known] <= 1)).all() and ym[known].unique().numel() > 2  # soft targets
    from meddx.training.module import Classifier

    clf = Classifier({"name": "small_cnn"}, {"mixup": 0.4}, "multilabel", 1, 3)
    loss = clf.loss(clf(xm), ym)
    assert torch.isfinite(loss)


def test_label_smoothing_binary_and_multiclass():
    from meddx.training.module import Classifier

    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.2, 1.5]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    multi = Classifier({"name": "small_cnn"}, {}, "multiclass", 1, 3)
    assert multi.loss(logits, y, smoothing=0.1).item() == pytest.approx(
        F.cross_entropy(logits, y.argmax(1), label_smoothing=0.1).item(), rel=1e-6
    )
    binary = Classifier({"name": "small_cnn"}, {}, "multilabel", 1, 3)
    smooth = y * 0.9 + 0.05
    manual = F.binary_cross_entropy_with_logits(logits, smooth)  # class weights off: plain BCE (both weights 1)
    assert binary.loss(logits, y, smoothing=0.1).item() == pytest.approx(manual.item(), rel=1e-6)
    assert binary.loss(logits, y, smoothing=0.1).item() != pytest.approx(binary.loss(logits, y).item(), rel=1e-3)


def test_gradual_unfreezing_lets_the_optimizer_update_the_next_block():
    from meddx.training.callbacks import GradualUnfreezing
    from meddx.training.module import Classifier

    torch.manual_seed(0)
    clf = Classifier({"name": "small_cnn"}, {"finetune_depth": 1, "backbone_lr_mult": 0.1}, "binary", 1, 1)
    opt = clf.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([clf.train_cfg.lr * 0.1, clf.train_cfg.lr])
    cb = GradualUnfreezing(1, every=1)
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([[1.0], [0.0]] * 4)

    def step() -> dict:
        before = {k: v.detach().clone() for k, v in clf.model.named_parameters()}
        opt.zero_grad()
        clf.loss(clf(x), y).backward()
        opt.step()
        return {k for k, v in clf.model.named_parameters() if not torch.equal(v, before[k])}

    cb.freeze_before_training(clf)
    changed = step()
    assert changed and all(k.startswith(("features.2.", "head.")) for k in changed)
    cb.finetune_function(clf, 1, opt)
    changed = step()
    assert any(k.startswith("features.1.") for k in changed) and not any(k.startswith("features.0.") for k in changed)


def test_cli_names_a_mismatched_tensor_in_one_line(data_dir, tmp_path):
    torch.save(create_model("small_cnn_wide", 1, 1).state_dict(), tmp_path / "wide.pt")
    proc = run_cli(
        "train",
        "--data",
        str(need(data_dir, "medmnist/breastmnist.npz")),
        "--init-from",
        str(tmp_path / "wide.pt"),
        "--model",
        "small_cnn",  # the user's model (without it the plan takes small_cnn_wide, the one whose shapes fit)
        "--finetune-depth",
        "0",
        "--epochs",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--set",
        "train.progress_bar=false",
        "--set",
        "split.on_duplicate_images=drop_from_train",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "features.0.0.0.weight (64, 1, 3, 3) in the file vs (32, 1, 3, 3) in the model" in proc.stderr
    proc = run_cli("train", "--finetune-depth", "-1", "--epochs", "1")
    assert proc.returncode == 2 and "finetune_depth" in proc.stderr


def test_a_depth_that_freezes_random_weights_or_names_missing_blocks_is_refused(tmp_path):
    """`--finetune-depth 0` without weights froze a random backbone (129 of 287,009 parameters trained, no word);
    `--finetune-depth 7` on the 3-block small CNN trained everything, silently."""
    from meddx.errors import ConfigError
    from meddx.models import create_model
    from meddx.models.finetune import check_depth

    model = create_model("small_cnn", in_chans=1, num_classes=1)
    with pytest.raises(ConfigError, match=r"finetune_depth 0 freezes part of small_cnn, but no weights were loaded"):
        check_depth(model, 0, "small_cnn", loaded=False)
    with pytest.raises(ConfigError, match=r"its first 2 block\(s\) would stay random"):
        check_depth(model, 1, "small_cnn", loaded=False)
    with pytest.raises(ConfigError, match=r"finetune_depth 7: small_cnn has 3 backbone blocks"):
        check_depth(model, 7, "small_cnn", loaded=True)
    check_depth(model, 3, "small_cnn", loaded=False)  # every block trains: nothing random is frozen
    check_depth(model, "all", "small_cnn", loaded=False)
    with pytest.raises(ConfigError, match=r"only the head would learn"):  # before a model exists: depth 0 alone
        check_depth(None, 0, "small_cnn", loaded=False)
    check_depth(None, 1, "small_cnn", loaded=False)  # told once the model is built

    class Blockless(torch.nn.Module):  # a timm model whose blocks meddx cannot tell apart trains at 'all'
        def forward(self, x):
            return x

    check_depth(Blockless(), "all", "x", loaded=False)


def test_init_from_a_folder_meddx_made_says_what_to_give(tmp_path):
    """A pretrain folder, an ensemble and a word2vec folder each got 'a run folder ... needs model.pt (did the run
    finish?)'; a file of random bytes got torch's six-line advice to load it with weights_only=False."""
    from meddx.models.state_files import read_state_dict

    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "encoder.pt").write_bytes(b"x")
    (tmp_path / "ens" / "members" / "seed0").mkdir(parents=True)
    (tmp_path / "ens" / "members" / "seed0" / "model.pt").write_bytes(b"x")
    (tmp_path / "cv" / "fold0").mkdir(parents=True)
    (tmp_path / "cv" / "fold0" / "model.pt").write_bytes(b"x")
    (tmp_path / "w2v").mkdir()
    (tmp_path / "w2v" / "embeddings.pt").write_bytes(b"x")
    for folder, says in [("pre", "a `meddx pretrain` folder: give its encoder, --init-from "),
                         ("ens", "an ensemble of 1 models: give one of them, e.g. --init-from "),
                         ("cv", "a cross-validation of 1 folds: give one fold's model, e.g. --init-from "),
                         ("w2v", "word vectors for token models, not image weights")]:  # fmt: skip
        with pytest.raises(ConfigError, match=re.escape(says)):
            read_state_dict(tmp_path / folder)
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ConfigError) as e:
        read_state_dict(tmp_path / "random.pt")
    said = str(e.value)
    assert "\n" not in said and "not a file torch.save wrote" in said and "weights_only" not in said
    (tmp_path / "notes.pt").write_text("hello")  # a text file: it got 'not a loadable state dict (KeyError: 101)'
    with pytest.raises(ConfigError, match=r"notes.pt: not a file torch.save wrote \(it starts b'hell'"):
        read_state_dict(tmp_path / "notes.pt")
    import pickle

    (tmp_path / "objects.pt").write_bytes(pickle.dumps({"a": object}))  # a pickle, but of more than tensors
    with pytest.raises(ConfigError, match="not a loadable state dict"):
        read_state_dict(tmp_path / "objects.pt")


def test_a_mismatch_names_the_model_the_weights_were_made_for(tmp_path):
    """`--init-from pre/xray/encoder.pt --model resnet18` listed missing and unexpected tensors but not that the file
    was a small CNN's, which meddx had written down beside it."""
    from meddx.models.finetune import load_pretrained

    (tmp_path / "pre").mkdir()
    torch.save(create_model("small_cnn", in_chans=1, num_classes=1).state_dict(), tmp_path / "pre" / "encoder.pt")
    (tmp_path / "pre" / "pretrain.json").write_text('{"model": "small_cnn"}')
    with pytest.raises(
        ConfigError, match=r"encoder.pt \(made for small_cnn: give --model small_cnn\): weights do not fit the model"
    ):
        load_pretrained(create_model("small_cnn_wide", in_chans=1, num_classes=1), tmp_path / "pre" / "encoder.pt")
    torch.save(create_model("small_cnn_wide", in_chans=1, num_classes=1).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ConfigError, match=r"bare.pt \(made for small_cnn_wide: give --model small_cnn_wide\)"):
        load_pretrained(create_model("small_cnn", in_chans=1, num_classes=1), tmp_path / "bare.pt")  # names alike


def test_the_report_says_how_a_model_was_fine_tuned():
    """The report named only the weights' path: not that the backbone was frozen, unfrozen gradually or trained at a
    tenth of the rate, nor what the file was, nor a first conv adapted to other channels."""
    from types import SimpleNamespace

    from meddx.config import as_config
    from meddx.evaluation.sections import transfer_summary

    cfg = as_config({"train": {"init_from": "pre/encoder.pt", "finetune_depth": 0, "unfreeze_every": 2,
                               "backbone_lr_mult": 0.1}})  # fmt: skip
    init = {"loaded": 36, "adapted": ["features.0.0.0.weight: 3 -> 1 channels"], "model": "small_cnn"}
    said = transfer_summary(SimpleNamespace(config=cfg, training={"init_from": init}))
    assert said == (
        "; initialised from pre/encoder.pt, a small_cnn encoder (36 tensors, a new head); first conv adapted "
        "(features.0.0.0.weight: 3 -> 1 channels); the backbone frozen, the head trained, one more block unfrozen "
        "every 2 epoch(s); backbone learning rate 0.1 x the head's"
    )
    assert transfer_summary(SimpleNamespace(config=as_config({}), training={})) == ""
    bert = as_config({"model": {"weights": "mlm/encoder.pt"}, "train": {"finetune_depth": 2, "backbone_lr_mult": 0.1}})
    assert transfer_summary(SimpleNamespace(config=bert, training={})) == (
        "; pretrained weights mlm/encoder.pt; the head and the last 2 block(s) trained; backbone learning rate 0.1 x "
        "the head's"
    )


def test_a_frozen_random_backbone_is_refused_before_any_folder_is_made(tmp_path, data_dir):
    """The planned search and ensembles made their folder before `fit` refused, leaving an 'interrupted' run that a
    --resume could not finish; now the planner and cv refuse first."""
    import meddx

    npz = str(need(data_dir, "medmnist/breastmnist.npz"))
    cfg = {"data": {"path": npz}, "output_dir": str(tmp_path / "runs"), "train": {"finetune_depth": 0}}
    with pytest.raises(ConfigError, match="only the head would learn"):
        meddx.train(cfg)
    with pytest.raises(ConfigError, match="only the head would learn"):
        meddx.cross_validate(cfg, folds=2)
    one = {**cfg, "train": {"finetune_depth": 1, "ensemble": 2}, "plan": {"enabled": False}}  # an ensemble's folder
    with pytest.raises(ConfigError, match=r"its first 2 block\(s\) would stay random"):
        meddx.train(one)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
