"""The Markdown table of bench/tianchi.py: each row's competition figures and its ratio to both peers on the same
rows, written into docs/benchmarks.md (round 1 and round 2 each have a section)."""

from __future__ import annotations

import os
import platform

import numpy as np
import torch
from _docs import write_section
from _tianchi_ledger import fold_figures, fold_note, loss, mean_auc, pooled
from _tianchi_rows import MODELS


def per_fold(rows, r: dict, names: list[str]) -> dict[int, dict]:
    """A row's figures fold by fold: the ledger's, or worked out from its probabilities."""
    if r["p"] is None:
        return r["folds"]
    y, p = rows.y[r["mask"]], r["p"]
    at = rows.folds[r["mask"]]
    return {k: fold_figures(y[at == k], p[at == k], names) for k in np.unique(at)}


def figures(rows, r: dict, names: list[str], tfidf: dict, peer: dict | None) -> tuple:
    """(combined, regions, types loss, mean AUC, ratio to TF-IDF, ratio to the plain BiLSTM or '') on the row's rows;
    losses pooled over folds equal those over all its rows."""
    y, mask = rows.y[r["mask"]], r["mask"]
    if r["p"] is None:
        folds = list(r["folds"].values())
        combined, reg, typ, auc = (pooled(folds, f) for f in ("combined", "regions", "types", "auc"))
    else:
        combined, _, reg, typ = loss(y, r["p"], names)
        auc = mean_auc(y, r["p"])
    vs_tfidf = combined / loss(y, tfidf["p"][mask], names)[0]
    mine, theirs = per_fold(rows, r, names), per_fold(rows, peer, names) if peer else {}
    vs_peer = f"{combined / pooled([theirs[k] for k in mine], 'combined'):.2f}" if set(mine) <= set(theirs) else ""
    return combined, reg, typ, auc, vs_tfidf, vs_peer


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
    tfidf = rows.items[2]
    peer = next((r for r in rows.items if r["name"].startswith("peer: plain")), None)
    for r in rows.items:
        combined, reg, typ, auc, vs_tfidf, vs_peer = figures(rows, r, names, tfidf, peer)
        losses = f"{reg:.4f} | {typ:.4f}" if round2 else f"{combined:.4f}"
        lines.append(
            f"| {r['name']} | {int(r['mask'].sum())} | {losses} | {1 - combined:.4f} | {auc:.4f} | {vs_tfidf:.2f} | "
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
