"""The numba kernel behind the bootstrap (imported only when a bootstrap runs): one walk down each segment's items,
sorted by descending score, for blocks of resamples at once. One thread, the GIL released: the next chunk of
resamples is drawn meanwhile."""

from __future__ import annotations

import numba
import numpy as np


def _jit(fn):
    """njit with the compiled code cached on disk (next to this file, else in the user's cache directory); where
    neither is writable, compiled anew in each process."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


def _walk(weights, col, mass, moff, flag, seg, nmass, cut_pos, cut_slot, cut_seg, rank, cut):
    """weights (blocks, patients, R resamples); per item its patient `col`, its `nmass[s]` masses (from `moff[s]`
    in the flat `mass`) and `flag` (1: first item of a tied group holding a positive, 2: its last); writes per
    resample and segment the AUC's and AP's sums (`rank`) and the cumulative masses at each cut (`cut`)."""
    R, M = weights.shape[2], cut.shape[2]  # noqa: N806
    for blk in range(weights.shape[0]):
        w_blk = weights[blk]
        cum = np.zeros((M, R))
        pos0, neg0, auc, ap = np.zeros(R), np.zeros(R), np.zeros(R), np.zeros(R)
        for s in range(len(seg) - 1):
            cum[:], auc[:], ap[:] = 0.0, 0.0, 0.0
            c, k, nm = cut_seg[s], seg[s], nmass[s]
            while True:
                while c < cut_seg[s + 1] and cut_pos[c] == k:
                    for r in range(R):
                        cut[blk * R + r, cut_slot[c]] = cum[:, r]
                    c += 1
                if k == seg[s + 1]:
                    break
                if flag[k] & 1:
                    pos0[:], neg0[:] = cum[0], cum[1]
                w = w_blk[col[k]]
                for m in range(nm):
                    v = mass[moff[s] + (k - seg[s]) * nm + m]
                    if v != 0.0:
                        for r in range(R):
                            cum[m, r] += w[r] * v
                if flag[k] & 2:
                    for r in range(R):
                        gain = cum[0, r] - pos0[r]  # the group's positive weight
                        auc[r] += gain * (neg0[r] + 0.5 * (cum[1, r] - neg0[r]))
                        seen = cum[0, r] + cum[1, r]
                        if seen > 0:
                            ap[r] += cum[0, r] / seen * gain
                k += 1
            rank[blk * R : blk * R + R, s, 0] = auc
            rank[blk * R : blk * R + R, s, 1] = ap


walk = _jit(_walk)
