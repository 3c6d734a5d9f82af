"""The Markdown table of bench/tianchi.py: each row's competition figures and its ratio to both peers on the same
rows, written into docs/benchmarks.md (round 1 and round 2 each have a section)."""

from __future__ import annotations

import os
import platform

import numpy as np
import torch
from _docs import write_section
from _tianchi_rows import MODELS, fold_note

from meddx.evaluation.metrics import mlogloss, roc_auc

SHARE = 0.6  # round 2: score = 0.6 x (1 - region mlogloss) + 0.4 x (1 - type mlogloss)


def loss(y: np.ndarray, p: np.ndarray, names: list[str]) -> tuple[float, ...]:
    """(combined loss = 1 - score, mlogloss over every label, regions', types'); round 1: regions only."""
    types = np.array([n.startswith("type_") for n in names])
    everything = mlogloss(y, p)
    if not types.any():
        return everything, everything, everything, float("nan")
    r, t = mlogloss(y[:, ~types], p[:, ~types]), mlogloss(y[:, types], p[:, types])
    return SHARE * r + (1 - SHARE) * t, everything, r, t


def render(rows, y: np.ndarray, names: list[str], args) -> str:
    """The table so far; the ratio columns compare 1 - score with the peer's on the same rows (below 1: better)."""
    round2 = any(n.startswith("type_") for n in names)
    models = "" if args.models == MODELS else f" --models {args.models}"
    lines = [
        f"Command: `PYTHONPATH=. python bench/tianchi.py --round {args.round} --neural-folds {args.neural_folds} "
        f"--epochs {args.epochs} --bert-size {args.bert_size} --mlm-epochs {args.mlm_epochs} "
        f"--mlm-masking {args.mlm_masking}{models}`; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores ({torch.get_num_threads()} torch "
        f"threads); GPU: {torch.cuda.is_available()}.",
        f"{len(y):,} labelled reports, iterative-stratified folds (seed 0). mlogloss is the competition's (BCE averaged "
        "over labels, then reports, clip 1e-15); "
        + (
            "score = 0.6 x (1 - regions mlogloss) + 0.4 x (1 - types mlogloss). "
            if round2
            else "score = 1 - mlogloss. "
        )
        + "Ratios: this row's 1 - score over the peer's **on the same rows** (below 1: better than the peer).",
        "",
        "| row | rows scored | "
        + ("regions mlogloss | types mlogloss | " if round2 else "mlogloss | ")
        + "score | mean AUC | vs TF-IDF peer | vs plain BiLSTM peer | minutes | notes |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if round2 else ""),
    ]
    tfidf, peer = rows.items[2], rows.items[3] if len(rows.items) > 3 else None
    for r in rows.items:
        mask = r["mask"]
        combined, _, reg, typ = loss(y[mask], r["p"], names)
        auc = np.nanmean([roc_auc(y[mask][:, j], r["p"][:, j])[0] for j in range(len(names))])
        vs_tfidf = combined / loss(y[mask], tfidf["p"][mask], names)[0]
        same = peer is not None and (mask == peer["mask"]).all()
        vs_peer = f"{combined / loss(y[mask], peer['p'], names)[0]:.2f}" if same else ""
        figures = f"{reg:.4f} | {typ:.4f}" if round2 else f"{combined:.4f}"
        lines.append(
            f"| {r['name']} | {int(mask.sum())} | {figures} | {1 - combined:.4f} | {auc:.4f} | {vs_tfidf:.2f} | "
            f"{vs_peer} | {r['seconds'] / 60:.1f} | {r['note']} |"
        )
    table = "\n".join(lines)
    if not args.no_docs:
        key, title = ("tianchi-r2", "Tianchi, round 2") if round2 else ("tianchi", "Tianchi, round 1")
        if args.neural_folds < args.folds:  # a screening on some folds keeps the all-fold table of the same round
            key, title = f"{key}-screen", f"{title}, screening on {fold_note(args).split(',')[0]}"
        if args.section:  # a study of its own (BERT's size and schedule) beside the screening, not over it
            key, title = f"{key}-{args.section}", f"{title}, {args.section}"
        write_section(key, f"{title} (sequence track)", table)
    return table
