"""The model registry: any channel count, local weights only, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve

from meddx.errors import ConfigError
from meddx.evaluation.calibration import reliability
from meddx.models import create_model, list_models, min_input_size


@pytest.mark.parametrize(
    "name,chans,size", [("small_cnn", 2, 28), ("resnet18", 2, 64), ("densenet121", 1, 32), ("efficientnet_b0", 5, 64)]
)
def test_any_channel_count(name, chans, size):
    model = create_model(name, in_chans=chans, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, chans, size, size))
    assert out.shape == (2, 3)


def test_registry_lists_and_rejects():
    names = list_models()
    assert {"small_cnn", "resnet18", "resnet50", "densenet121", "efficientnet_b0"} <= set(names)
    assert min_input_size("densenet121") == 32
    assert "resnet34" in list_models(include_timm=True)  # any timm name works too
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("nope", 1, 1)


def test_local_weights_round_trip_and_mismatch(tmp_path):
    a = create_model("small_cnn", 1, 2)
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = create_model("small_cnn", 1, 2, weights=tmp_path / "w.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ConfigError, match=r"head\.2\.weight \(2, 128\) vs \(5, 128\)"):
        create_model("small_cnn", 1, 5, weights=tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="never downloads"):
        create_model("small_cnn", 1, 2, weights=tmp_path / "missing.pt")


def test_reliability_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(float)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    rel = reliability(y, p, bins=10)
    np.testing.assert_allclose(rel["observed"], prob_true, atol=1e-9)
    np.testing.assert_allclose(rel["mean_predicted"], prob_pred, atol=1e-9)


def test_channels_last_and_compile_keep_the_weights_names_and_outputs():
    """`train.channels_last` and `train.compile` change how the model runs, not what it computes or how its weights
    are saved (compiled in place: no `_orig_mod.` prefix in model.pt)."""
    from meddx.config import ModelConfig, TrainConfig
    from meddx.training.losses import LossWeights
    from meddx.training.module import Classifier

    def classifier(**train) -> Classifier:
        torch.manual_seed(0)
        return Classifier(ModelConfig(name="small_cnn"), TrainConfig(**train), "binary", 1, 1, LossWeights())

    plain, fast = classifier(), classifier(channels_last=True, compile=True)
    fast.configure_model()
    fast.configure_model()  # Lightning calls it for every fit and predict
    assert fast.model.features[0][0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(4, 1, 28, 28)
    plain.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-4, rtol=1e-4)
