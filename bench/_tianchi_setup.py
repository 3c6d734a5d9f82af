"""What some rows of bench/tianchi.py need before their folds train: MLM or word2vec pretraining, pseudo-labels
from earlier rows' fold models; each also described in a note for the table and the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import meddx


def pretrained(cfg: dict, model: str, options: list[str], args, out: Path, run: bool = True) -> str:
    """Run the pretraining a row needs (MLM for bert_mlm, word2vec for +w2v) and point the config at it; with `run`
    False, only describe what an earlier run left in --out (a note; '' when nothing is there)."""
    extra = ""
    if model == "bert_mlm":
        cfg["pretrain"] = {"dir": str(out / f"mlm-{bert_tag(args)}"), "max_epochs": args.mlm_epochs,
                           "size": args.bert_size, "batch_size": 64, "lr": 1e-3, "masking": args.mlm_masking}  # fmt: skip
        folder = meddx.pretrain(cfg) if run else Path(cfg["pretrain"]["dir"])
        if not (folder / "pretrain.json").is_file():
            return ""
        info = json.loads((folder / "pretrain.json").read_text())
        cfg["model"] = {"name": "bert_small", "weights": str(folder / "encoder.pt"), "dropout": 0.1}
        minutes, loss = info.get("seconds_this_session", 0) / 60, info["final_val_mlm_loss"]
        extra = (
            f"; MLM {args.mlm_epochs} epochs ({args.mlm_masking} masking, {minutes:.0f} min), val MLM loss {loss:.2f}"
        )
    if "w2v" in options or "w2vfrozen" in options:
        cfg["pretrain"] = {"objective": "word2vec", "dir": str(out / "word2vec")}
        folder = meddx.pretrain(cfg) if run else out / "word2vec"
        if not (folder / "pretrain.json").is_file():
            return extra
        cfg["model"]["embeddings"] = str(folder)
        info = json.loads((folder / "pretrain.json").read_text())
        extra = f"; word2vec {info.get('seconds', float('nan')):.0f} s on the train + unlabelled descriptions"
    return extra


def pseudo_setup(cfg: dict, sources: list[Path], unlabelled: list[Path], earlier: list[str]) -> str:
    """Pseudo-labels from the mean of every earlier row's models (fold k's from their fold k, fold-safe): each of
    the `earlier` rows needs its fold models on this machine."""
    if not earlier or not unlabelled:
        raise SystemExit("--models: +pseudo needs earlier rows to label with and unlabelled descriptions (round 1)")
    if missing := [k for k in earlier if k not in {d.name for d in sources}]:
        raise SystemExit(
            f"--models: +pseudo labels with every earlier row's fold models, and {', '.join(missing)} ran elsewhere "
            "(their folds are figures in the ledger only): train them here with another --ledger, or drop +pseudo"
        )
    cfg["train"]["pseudo_labels"] = {"sources": [str(d) for d in sources], "data": [str(p) for p in unlabelled]}
    return f"; pseudo-labels (every label at most 0.05 or at least 0.95) from the mean of {len(sources)} earlier rows"


def bert_tag(args) -> str:
    """A BERT row's settings in its cache key, so rows of other sizes or MLM schedules never reuse it."""
    return f"{args.bert_size}-mlm{args.mlm_epochs}-{args.mlm_masking}"
