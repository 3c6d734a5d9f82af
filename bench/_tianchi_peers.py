"""The Tianchi benchmark's two peers, nothing from meddx in them: TF-IDF + one-vs-rest logistic regression
(scikit-learn) and a plain hand-written PyTorch BiLSTM."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _plain import plain_bce_epoch


def sklearn_peer(texts: list[str], y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """TF-IDF over token 1-2-grams + one-vs-rest logistic regression; OOF probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    oof = np.zeros_like(y)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", sublinear_tf=True, min_df=2)
        clf = OneVsRestClassifier(LogisticRegression(C=8.0, max_iter=2000))
        clf.fit(vec.fit_transform([texts[i] for i in np.flatnonzero(tr)]), y[tr])
        oof[te] = clf.predict_proba(vec.transform([texts[i] for i in np.flatnonzero(te)]))
    return oof


class PlainBiLSTM(torch.nn.Module):
    """The peer: embedding 128, BiLSTM 128, max + mean pooling, dropout 0.3 (nothing from meddx)."""

    def __init__(self, vocab: int, labels: int):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 128, padding_idx=0)
        self.lstm = torch.nn.LSTM(128, 128, batch_first=True, bidirectional=True)
        self.drop = torch.nn.Dropout(0.3)
        self.out = torch.nn.Linear(512, labels)

    def forward(self, x):
        h, _ = self.lstm(self.drop(self.emb(x)))
        m = (x != 0).unsqueeze(-1).float()
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        mx = h.masked_fill(m == 0, -1e9).amax(1)
        return self.out(self.drop(torch.cat([mean, mx], 1)))


def plain_lstm_peer(x: torch.Tensor, y: np.ndarray, split: np.ndarray, epochs: int, seed: int = 0) -> np.ndarray:
    """Adam 2e-3, batch 64, plain BCE, the epoch with the best val loss predicts the test rows."""
    torch.manual_seed(seed)
    yt = torch.from_numpy(y).float()
    tr, va, te = (torch.from_numpy(split == s) for s in ("train", "val", "test"))
    model = PlainBiLSTM(int(x.max()) + 1, y.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xtr, ytr = x[tr], yt[tr]
    best, best_test = float("inf"), None
    for _ in range(epochs):
        plain_bce_epoch(model, opt, xtr, ytr, 64)
        model.eval()
        with torch.inference_mode():
            val = float(F.binary_cross_entropy_with_logits(model(x[va]), yt[va]))
            if val < best:
                best, best_test = val, torch.sigmoid(model(x[te])).double().numpy()
    return best_test
