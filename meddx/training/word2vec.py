"""Word vectors for the token models (the Tianchi write-ups' word2vec step): gensim's skip-gram over every
description, labels unused, saved as an embedding matrix aligned to the folder's vocab.json."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from meddx.atomic import save_torch, write_text
from meddx.config import RunConfig
from meddx.data.reports import read_descriptions
from meddx.data.sequences import MASK, N_SPECIAL, PAD, UNK, build_vocab
from meddx.models.embeddings import EMBEDDINGS
from meddx.run import VOCAB


def _stable_hash(text: str) -> int:
    """gensim seeds each word's vector from a hash: Python's own changes per process, this one does not."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def train_word_vectors(cfg: RunConfig) -> Path:
    """Skip-gram word2vec (gensim, one worker: the same vectors for the same seed) over data.path + data.vocab_files;
    writes vocab.json, embeddings.pt (rows: pad 0, unk the mean vector, mask small noise, then the vocabulary) and
    pretrain.json into pretrain.dir."""
    from gensim.models import Word2Vec

    pc, out = cfg.pretrain, Path(cfg.pretrain.dir)
    out.mkdir(parents=True, exist_ok=True)
    seqs = read_descriptions([str(cfg.data.path), *cfg.data.vocab_files])
    vocab = build_vocab(seqs, cfg.data.max_len)
    started = time.perf_counter()
    w2v = Word2Vec(
        [[str(t) for t in s] for s in seqs],
        vector_size=pc.vector_size,
        window=pc.window,
        min_count=1,
        sg=1,
        workers=1,
        seed=cfg.train.seed,
        epochs=pc.max_epochs,
        hashfxn=_stable_hash,
    )
    seconds = time.perf_counter() - started
    vectors = np.stack([w2v.wv[str(t)] for t in vocab.tokens]).astype(np.float32)
    weight = np.zeros((vocab.size, pc.vector_size), np.float32)
    weight[N_SPECIAL:] = vectors
    weight[UNK] = vectors.mean(0)
    weight[MASK] = np.random.default_rng(cfg.train.seed).normal(0, 0.01, pc.vector_size)
    weight[PAD] = 0.0
    vocab.save(out / VOCAB)
    save_torch({"weight": torch.from_numpy(weight)}, out / EMBEDDINGS)
    info = {
        "objective": "word2vec",
        "sentences": len(seqs),
        "vocab_size": vocab.size,
        "vector_size": pc.vector_size,
        "window": pc.window,
        "epochs": pc.max_epochs,
        "algorithm": "skip-gram",
        "seconds": round(seconds, 1),
    }
    write_text(out / "pretrain.json", json.dumps(info, indent=2))
    return out
