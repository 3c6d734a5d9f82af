"""MLM masking: single tokens as before, or whole n-gram spans; dynamic (new masks per call), never on padding or the
special tokens, about the asked share of real tokens."""

from __future__ import annotations

import torch

from meddx.data.sequences import N_SPECIAL
from meddx.training.pretrain import mask_tokens, ngram_targets


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(N_SPECIAL, 200, (256, 60), generator=g)
    x[:, 45:] = 0  # padding
    x[::7, 0] = 1  # an unknown token now and then
    return x


def _runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the runs of consecutive masked positions."""
    out = []
    for row in mask.tolist():
        n = 0
        for v in [*row, False]:
            if v:
                n += 1
            elif n:
                out.append(n)
                n = 0
    return out


def test_ngram_masking_masks_spans_of_about_the_share_asked():
    x = _batch()
    real = x >= N_SPECIAL
    target = ngram_targets(real, 0.15, 3, torch.Generator().manual_seed(1))
    assert not (target & ~real).any()  # never padding or specials
    share = float(target.sum() / real.sum())
    assert 0.11 < share < 0.17, share  # overlapping spans land a little under 15%
    runs = _runs(target)
    assert max(runs) >= 3 and sum(r > 1 for r in runs) / len(runs) > 0.3  # spans, not only single tokens
    single = (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.15) & real
    assert sum(r > 1 for r in _runs(single)) / len(_runs(single)) < sum(r > 1 for r in runs) / len(runs)


def test_token_masking_is_unchanged_and_both_are_dynamic():
    x = _batch()
    inputs, labels = mask_tokens(x, 200, 0.15, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # today's rule written out: the same generator draws the same masks
    target = (torch.rand(x.shape, generator=g) < 0.15) & (x >= N_SPECIAL)
    assert torch.equal(labels, torch.where(target, x, torch.full_like(x, -100)))
    for masking in ("token", "ngram"):
        a = mask_tokens(x, 200, 0.15, masking=masking)[1]
        b = mask_tokens(x, 200, 0.15, masking=masking)[1]
        assert not torch.equal(a, b)  # a new mask every batch
        masked = mask_tokens(x, 200, 0.15, torch.Generator().manual_seed(4), masking)[0]
        assert torch.equal(masked[x < N_SPECIAL], x[x < N_SPECIAL])  # padding and specials stay
    assert torch.equal(inputs[labels == -100], x[labels == -100])
