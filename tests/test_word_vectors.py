"""word2vec pretraining for token models: vectors aligned to the folder's vocabulary, deterministic, loaded into any
sequence model's embedding (frozen if asked), and a size mismatch named in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_tricks import _synthetic, _tiny

from meddx.data.sequences import N_SPECIAL, PAD, Vocab
from meddx.errors import ConfigError


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    import meddx

    root = tmp_path_factory.mktemp("w2v")
    _synthetic(root / "train.csv", n=400)  # the vocabulary 10-59 of the tiny runs below
    rng = np.random.default_rng(0)
    topics = [range(20, 30), range(40, 50)]  # each extra report draws its words from one topic only
    extra = [" ".join(map(str, rng.choice(topics[i % 2], 12))) for i in range(400)]
    (root / "topics.csv").write_text("".join(f"{i}|,|{t} \n" for i, t in enumerate(extra)))
    pretrain = {"objective": "word2vec", "dir": str(root / "w2v"), "vector_size": 16, "max_epochs": 20}
    cfg = {"data": {"path": str(root / "train.csv"), "vocab_files": [str(root / "topics.csv")]}, "pretrain": pretrain}
    return root, cfg, meddx.pretrain(cfg)


def test_vectors_are_aligned_to_the_vocabulary_and_deterministic(vectors, tmp_path):
    import meddx

    root, cfg, folder = vectors
    vocab = Vocab.load(folder / "vocab.json")
    weight = torch.load(folder / "embeddings.pt", weights_only=True)["weight"]
    assert weight.shape == (vocab.size, 16) and torch.all(weight[PAD] == 0)
    info = json.loads((folder / "pretrain.json").read_text())
    assert info["objective"] == "word2vec" and info["vocab_size"] == vocab.size
    again = meddx.pretrain({**cfg, "pretrain": {**cfg["pretrain"], "dir": str(tmp_path / "again")}})
    assert torch.equal(torch.load(again / "embeddings.pt", weights_only=True)["weight"], weight)
    row = {t: N_SPECIAL + i for i, t in enumerate(vocab.tokens)}
    unit = torch.nn.functional.normalize(weight, dim=1)
    a, b = [row[t] for t in range(20, 30)], [row[t] for t in range(40, 50)]
    within = (unit[a] @ unit[a].T).mean() + (unit[b] @ unit[b].T).mean()
    across = 2 * (unit[a] @ unit[b].T).mean()
    assert float(within - across) > 0.2  # words of one topic end closer together than words of the other


def test_a_model_starts_from_the_vectors_and_frozen_keeps_them(vectors):
    import meddx

    root, _, folder = vectors
    cfg = _tiny(root, "frozen")
    cfg["model"] = {"name": "bilstm", "kwargs": {"embed_dim": 16, "hidden": 16},
                    "embeddings": str(folder), "freeze_embeddings": True}  # fmt: skip
    cfg["train"]["max_epochs"] = 2
    run = meddx.train(cfg)
    weight = torch.load(folder / "embeddings.pt", weights_only=True)["weight"]
    saved = torch.load(run.path / "model.pt", weights_only=True)
    assert torch.equal(saved["embed.weight"], weight)  # frozen: the vectors trained nothing away
    assert Vocab.load(run.path / "vocab.json").tokens == Vocab.load(folder / "vocab.json").tokens
    probs = run.predict_proba(run.records("test"))  # the run stands alone: model.pt holds the vectors
    assert probs.shape == (len(run.records("test")), 17) and np.isfinite(probs).all()

    cfg["name"], cfg["model"]["freeze_embeddings"] = "tuned", False
    tuned = torch.load(meddx.train(cfg).path / "model.pt", weights_only=True)["embed.weight"]
    assert not torch.equal(tuned, weight) and torch.allclose(tuned[PAD], weight[PAD])


def test_vectors_of_another_size_are_one_config_error(vectors):
    from meddx.config import ModelConfig
    from meddx.models.output import build_model

    _, _, folder = vectors
    vocab = Vocab.load(folder / "vocab.json")
    with pytest.raises(ConfigError, match=r"holds \(\d+, 16\), the model's embedding is \(\d+, 128\)"):
        build_model(ModelConfig(name="bilstm", embeddings=str(folder)), 1, 3, vocab_size=vocab.size, max_len=20)
    with pytest.raises(ConfigError, match="not found"):
        build_model(ModelConfig(name="bilstm", embeddings=str(folder / "nope.pt")), 1, 3, vocab_size=9, max_len=5)


def test_bert_small_takes_vectors_of_its_hidden_size_into_its_word_embedding(tmp_path):
    """BERT's word embedding (not its position embedding) is the one the vectors fill; another width is one line."""
    from meddx.config import ModelConfig
    from meddx.models.bert import BERT_SIZES
    from meddx.models.output import build_model

    hidden, vocab = BERT_SIZES["tiny"][0], 30
    weight = torch.randn(vocab, hidden)
    torch.save({"weight": weight}, tmp_path / "embeddings.pt")
    cfg = ModelConfig(name="bert_small", kwargs={"size": "tiny"}, embeddings=str(tmp_path))
    model = build_model(cfg, 1, 3, vocab_size=vocab, max_len=16)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, weight)
    torch.save({"weight": torch.randn(vocab, 128)}, tmp_path / "embeddings.pt")
    with pytest.raises(ConfigError, match=r"holds \(30, 128\), the model's embedding is \(30, 64\)"):
        build_model(cfg, 1, 3, vocab_size=vocab, max_len=16)
