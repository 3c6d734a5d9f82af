"""The Tianchi write-ups' models and training options: RCNN, DPCNN, attention BiGRU, multi-sample dropout, FGM/PGD on
the embeddings, EMA weights, Lookahead and focal loss; each changes training as stated."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from meddx.config import TricksConfig
from meddx.data.sequences import trim_padding
from meddx.errors import ConfigError
from meddx.models import create_model
from meddx.training.adversarial import adversarial_loss, perturbed, word_embedding
from meddx.training.losses import focal_bce_with_logits, focal_cross_entropy, weighted_bce_with_logits

NEW = ["rcnn", "dpcnn", "bigru_attention"]


def _batch(seed: int = 0, n: int = 6, length: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, length, dtype=torch.long)
    for i, k in enumerate(torch.randint(1, length, (n,), generator=g).tolist()):
        x[i, :k] = torch.randint(3, 50, (k,), generator=g)
    return x


@pytest.mark.parametrize("name", NEW)
def test_new_models_ignore_the_padding_a_batch_shares(name):
    torch.manual_seed(0)
    x = _batch()
    trimmed, _ = trim_padding([(row, torch.zeros(1)) for row in x])
    model = create_model(name, 1, 5, vocab_size=50, max_len=20).eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(trimmed), model(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model(x[:2]), model(x)[:2], atol=1e-5, rtol=1e-4)  # nor on the batch's others


@pytest.mark.parametrize("name", ["bilstm", "textcnn", *NEW])
def test_multi_sample_dropout_averages_the_head_in_training_only(name):
    x = _batch()
    torch.manual_seed(0)
    one = create_model(name, 1, 5, vocab_size=50, max_len=20, dropout=0.5)
    torch.manual_seed(0)
    many = create_model(name, 1, 5, vocab_size=50, max_len=20, dropout=0.5, dropout_samples=8)
    with torch.inference_mode():
        torch.testing.assert_close(one.eval()(x), many.eval()(x))  # the same weights predict alike
        one.train(), many.train()
        spread_one = torch.stack([one(x) for _ in range(30)]).var(0).mean()
        spread_many = torch.stack([many(x) for _ in range(30)]).var(0).mean()
    assert spread_many < spread_one / 2  # eight masks averaged: much less noise per step


def test_dropout_samples_on_an_image_model_is_a_config_error():
    from meddx.config import ModelConfig
    from meddx.models.output import build_model

    with pytest.raises(ConfigError, match="dropout_samples is for token-sequence models"):
        build_model(ModelConfig(name="small_cnn", dropout_samples=4), 1, 2)


def _loss_of(model, x, y):
    return lambda: F.binary_cross_entropy_with_logits(model(x), y)


@pytest.mark.parametrize("kind", ["fgm", "pgd"])
def test_adversarial_loss_perturbs_embeddings_then_restores_them(kind):
    torch.manual_seed(0)
    model = create_model("bilstm", 1, 5, vocab_size=50, max_len=20, dropout=0.0)
    x, y = _batch(), torch.randint(0, 2, (6, 5)).float()
    emb = word_embedding(model)
    before = emb.weight.detach().clone()
    clean = _loss_of(model, x, y)()
    tricks = TricksConfig(adversarial=kind, adversarial_eps=0.5, pgd_steps=3)
    adv = adversarial_loss(model, _loss_of(model, x, y), clean, tricks)
    assert torch.equal(emb.weight, before) and not emb._forward_hooks  # restored: weights as before, hook gone
    assert float(adv.detach()) > float(clean.detach())  # the perturbation climbs the loss
    adv.backward()
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0


def test_a_training_step_with_fgm_returns_the_clean_loss_plus_the_adversarial_one():
    from meddx.training.module import Classifier

    x, y = _batch(), torch.randint(0, 2, (6, 5)).float()
    train = {"augment": {"enabled": False}, "tricks": {"adversarial": "fgm", "adversarial_eps": 0.5}}
    torch.manual_seed(0)
    module = Classifier(
        {"name": "bilstm", "dropout": 0.0}, train, "multilabel", 1, 5, None, {"vocab_size": 50, "max_len": 20}
    )
    clean = module.loss(module(x), y)
    step = module.training_step((x, y), 0)
    emb = word_embedding(module.model)
    delta = 0.5 * torch.nn.functional.normalize(torch.autograd.grad(clean, emb.weight)[0].flatten(), dim=0)
    with perturbed(emb, delta.view_as(emb.weight)):
        attacked = module.loss(module(x), y)
    torch.testing.assert_close(step, clean + attacked)  # both terms, the second at the FGM-perturbed embeddings
    assert float(attacked.detach()) > float(clean.detach())


def test_perturbed_embeddings_add_delta_to_the_looked_up_rows_only():
    emb = torch.nn.Embedding(10, 4, padding_idx=0)
    delta = torch.randn(10, 4)
    x = torch.tensor([[3, 5, 0]])
    with perturbed(emb, delta):
        inside = emb(x)
    torch.testing.assert_close(inside[0, :2], emb.weight[[3, 5]] + delta[[3, 5]])
    torch.testing.assert_close(inside[0, 2], emb.weight[0])  # padding is never perturbed
    torch.testing.assert_close(emb(x), emb.weight[x])


def test_adversarial_training_on_an_image_model_is_a_config_error():
    from meddx.training.module import Classifier

    with pytest.raises(ConfigError, match="no nn.Embedding"):
        Classifier({"name": "small_cnn"}, {"tricks": {"adversarial": "fgm"}}, "binary", 1, 1)


def test_focal_loss_is_bce_at_gamma_zero_and_discounts_easy_labels():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 3) * 3, torch.randint(0, 2, (8, 3)).float()
    y[0, 0] = float("nan")
    w = torch.ones(3)
    bce = weighted_bce_with_logits(logits, y, w, w)
    torch.testing.assert_close(focal_bce_with_logits(logits, y, w, w, 0.0), bce)
    assert float(focal_bce_with_logits(logits, y, w, w, 2.0)) < float(bce)
    easy = torch.tensor([[6.0]]), torch.tensor([[1.0]])
    hard = torch.tensor([[-1.0]]), torch.tensor([[1.0]])

    def ratio(lg: torch.Tensor, t: torch.Tensor) -> float:
        return float(focal_bce_with_logits(lg, t, w[:1], w[:1], 2.0) / weighted_bce_with_logits(lg, t, w[:1], w[:1]))

    assert ratio(*easy) < 1e-4 < 0.5 < ratio(*hard)
    target = F.one_hot(torch.tensor([0, 2, 1, 1]), 3).float()
    logits3 = torch.randn(4, 3)
    torch.testing.assert_close(
        focal_cross_entropy(logits3, target, torch.ones(3), 0.0), F.cross_entropy(logits3, target)
    )


def _synthetic(path, n: int = 240, seed: int = 0) -> None:
    """A `|,|` file whose 3 labels follow tokens 10, 11 and 12 (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        tokens = rng.integers(13, 60, rng.integers(5, 15)).tolist()
        labels = [j for j in range(3) if rng.random() < 0.3]
        tokens += [10 + j for j in labels]
        rng.shuffle(tokens)
        lines.append(f"{i}|,|{' '.join(map(str, tokens))} |,|{' '.join(map(str, labels))} ")
    path.write_text("\n".join(lines) + "\n")


def _tiny(tmp_path, name: str, **tricks) -> dict:
    _synthetic(tmp_path / "train.csv")
    return {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "data": {"path": str(tmp_path / "train.csv")},
        "model": {"name": "bigru", "kwargs": {"embed_dim": 16, "hidden": 16}},
        "train": {
            "max_epochs": 3,
            "batch_size": 32,
            "lr": 1e-2,
            "class_weights": "off",
            "progress_bar": False,
            "diagnostics": False,
            "tricks": tricks,
        },  # fmt: skip
        "evaluate": {"bootstrap": 0},
        "plan": {"enabled": False},
    }


@pytest.mark.slow
def test_ema_weights_are_what_is_saved_and_predicted(tmp_path):
    import meddx
    from meddx.data.readers import read_dataset

    run = meddx.train(_tiny(tmp_path, "ema", ema_decay=0.9, adversarial="fgm", lookahead=True, loss="focal"))
    best = torch.load(run.path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    saved = torch.load(run.path / "model.pt", map_location="cpu", weights_only=True)
    ema = {k.removeprefix("model."): v for k, v in best["state_dict"].items() if k.startswith("model.")}
    raw = {k.removeprefix("model."): v for k, v in best["current_model_state"].items() if k.startswith("model.")}
    assert all(torch.equal(saved[k], ema[k]) for k in saved)
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)  # the average, not the last step's weights
    test = read_dataset(run.config.data)
    pred = run.predictions("test")
    test.records = [r for r in test.records if r.id in set(pred["id"])]
    np.testing.assert_allclose(  # the post-fit predictions used the averaged weights too
        run.predict_proba(test.records), pred[[f"p_{n}" for n in run.label_names]].to_numpy(), atol=1e-5
    )
    training = json.loads((run.path / "training.json").read_text())
    assert training["tricks"] == {"adversarial": "fgm", "ema_decay": 0.9, "lookahead": True, "loss": "focal"}
    assert "ema" in training["model_pt"]
    report = (run.path / "report.md").read_text()
    assert "options: adversarial fgm, ema_decay 0.9, lookahead True, loss focal" in report


def test_ema_and_swa_together_is_a_config_error(tmp_path):
    import meddx

    cfg = _tiny(tmp_path, "both", ema_decay=0.9)
    cfg["train"]["swa"] = True
    with pytest.raises(ConfigError, match="choose one"):
        meddx.train(cfg)


def test_lookahead_wraps_adamw_and_follows_the_schedule():
    from timm.optim import Lookahead

    from meddx.training.module import Classifier

    module = Classifier({"name": "bilstm"}, {"tricks": {"lookahead": True}, "lr": 0.1}, "multilabel", 1, 3,
                        model_kwargs={"vocab_size": 50, "max_len": 20})  # fmt: skip
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, Lookahead) and isinstance(opt._base_optimizer, torch.optim.AdamW)
    sched.step()
    assert opt._base_optimizer.param_groups[0]["lr"] < 0.1  # the cosine schedule reaches the inner optimiser
