"""The rows of bench/tianchi.py: a resumable row store, the plain BiLSTM peer's rows and the meddx rows (models,
training options, pretraining, ensembles), all on the same folds."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from _tianchi_ensembles import ensembles, oof
from _tianchi_ledger import Ledger, commit, fold_figures, fold_note, fold_span, pooled
from _tianchi_peers import plain_lstm_peer
from _tianchi_setup import bert_tag, pretrained, pseudo_setup

from meddx.config import SplitConfig
from meddx.data.sequences import build_vocab
from meddx.data.split import assign_splits
from meddx.evaluation.metrics import mlogloss
from meddx.run import Run
from meddx.training.cv import cross_validate

MODELS = "bilstm,rcnn,dpcnn,bigru_attention,textcnn,bilstm+fgm,bilstm+ema,bilstm+msd,bilstm+lookahead,bilstm+focal"
TRICKS = {  # option -> config changes (dotted keys)
    "fgm": {"train.tricks.adversarial": "fgm", "train.tricks.adversarial_eps": 1.0},
    "pgd": {"train.tricks.adversarial": "pgd", "train.tricks.adversarial_eps": 1.0},
    "ema": {"train.tricks.ema_decay": 0.995},
    "msd": {"model.dropout_samples": 5},
    "lookahead": {"train.tricks.lookahead": True},
    "focal": {"train.tricks.loss": "focal"},
    "grouped": {"train.group_by_length": True},
    "w2v": {},  # model.embeddings from `meddx pretrain --objective word2vec`, set in _pretrained
    "w2vfrozen": {"model.freeze_embeddings": True},
    "pseudo": {},  # train.pseudo_labels from every earlier row's folds on the unlabelled descriptions, set in meddx_rows
}
# bilstm/bigru 4e-3 (cosine over few epochs starves them at 2e-3: fold-0 0.064 vs 0.057 at 8 epochs); attention
# models 5e-4 (2e-3 without warm-up diverged to 0.10); the convolutional models keep 2e-3
LRS = {"bilstm": 4e-3, "bigru": 4e-3, "rcnn": 4e-3, "bigru_attention": 4e-3, "transformer": 5e-4, "bert_small": 5e-4}


class Rows:
    """The table's rows (probabilities on the rows they score, or, for a row some of whose folds ran on another
    machine, the ledger's per-fold figures), each kept on disk so a rerun with --out resumes."""

    def __init__(self, folder: Path, y: np.ndarray, folds: np.ndarray, names: list[str], ledger: Ledger,
                 on_change: Callable[[], object]):  # fmt: skip
        self.folder, self.y, self.folds, self.names, self.ledger = folder, y, folds, names, ledger
        self.on_change, self.items = on_change, []

    def cached(
        self, key: str, compute: Callable[[], tuple[np.ndarray, str, str]]
    ) -> tuple[np.ndarray, str, float, str]:
        f = self.folder / f"{key}.npz"
        if f.is_file():
            z = np.load(f)
            return z["p"], str(z["name"]), float(z["seconds"]), str(z["note"])
        t = time.perf_counter()
        p, name, note, *spent = compute()  # a row resumed across runs gives its own total seconds
        seconds = spent[0] if spent else time.perf_counter() - t
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, p=p, name=name, seconds=seconds, note=note)
        return p, name, seconds, note

    def add(self, name: str, p: np.ndarray, mask: np.ndarray, seconds: float, note: str) -> None:
        self.items.append({"name": name, "p": p, "mask": mask, "seconds": seconds, "note": note})
        print(f"{name:44s} mlogloss {mlogloss(self.y[mask], p):.4f} on {mask.sum()} rows, {seconds:.0f} s", flush=True)
        if len(self.items) >= 4:
            self.on_change()  # the table so far, so a later failure keeps the figures

    def add_cached(self, key: str, compute: Callable, mask: np.ndarray) -> np.ndarray:
        p, name, seconds, note = self.cached(key, compute)
        self.add(name, p, mask, seconds, note)
        return p

    def add_summary(self, name: str, folds: dict[int, dict], note: str) -> None:
        """A row from the ledger's figures of the folds in `folds` (no probabilities: it joins no ensemble)."""
        mask = np.isin(self.folds, list(folds))
        seconds = sum(f["seconds"] for f in folds.values())
        self.items.append({"name": name, "p": None, "folds": folds, "mask": mask, "seconds": seconds, "note": note})
        print(f"{name:44s} mlogloss {pooled(list(folds.values()), 'combined'):.4f} on {mask.sum()} rows (ledger)")
        if len(self.items) >= 4:
            self.on_change()

    def record(self, key: str, k: int, test: np.ndarray, p: np.ndarray, seconds: float, note: str) -> dict:
        """Put fold `k` of row `key` (probabilities `p` on the rows `test`) into the ledger; its entry."""
        entry = fold_figures(self.y[test], p, self.names) | {"seconds": seconds, "commit": commit(), "note": note}
        self.ledger.put(key, k, entry)
        return entry


def summary_note(folds: dict[int, dict], count: int, total: int) -> str:
    """A ledger row's note: which folds (and how many of those to run are missing), the first fold's recipe, and the
    commits that ran them."""
    ran = (
        ", ".join(map(str, sorted(folds)))
        + f" of {total}"
        + (f" ({count - len(folds)} still to run)" if len(folds) < count else "")
    )
    commits = ", ".join(sorted({f["commit"] for f in folds.values()}))
    bare = {k: re.sub(r" \((\d+) reports added\)", "", f["note"]) for k, f in folds.items()}  # pseudo-label counts
    added = [m.group(1) for k in sorted(folds) if (m := re.search(r"\((\d+) reports added\)", folds[k]["note"]))]
    recipe = bare[min(folds)] + (f" ({'/'.join(added)} reports added)" if added else "")
    other = [f"fold {k}: {note}" for k, note in sorted(bare.items()) if note != bare[min(folds)]]
    recipe += f" (other recipes: {'; '.join(other)})" if other else ""
    return f"folds {ran}, {recipe}; per-fold figures from the ledger (commits {commits}), mean AUC the folds' mean"


def peer_rows(rows: Rows, ds, y: np.ndarray, neural: np.ndarray, args) -> None:
    """The plain PyTorch BiLSTM on the same train/val/test rows as each `meddx cv` fold; folds the ledger holds and
    this machine lacks are not trained again."""
    x, peer, folds, seconds = None, np.zeros_like(y), {}, 0.0
    note = f"{args.epochs} epochs max, lr 0.002 constant"
    for k in range(args.neural_folds):
        entry = rows.ledger.get("peer_bilstm", k)
        if not (rows.folder / f"peer_bilstm-fold{k}.npz").is_file() and (entry or args.record_only):
            folds |= {k: entry} if entry else {}
            continue
        if x is None:
            x = build_vocab([r.tokens for r in ds.records]).encode_all([r.tokens for r in ds.records])
        part = copy.deepcopy(ds)
        assign_splits(part, SplitConfig(folds=args.folds, fold=k))
        split = np.array([r.split for r in part.records])
        test = split == "test"
        fold = lambda split=split, x=x: (plain_lstm_peer(x, y, split, args.epochs), "", "")  # noqa: E731
        peer[test], _, fold_s, _ = rows.cached(f"peer_bilstm-fold{k}", fold)  # a kill keeps the folds
        folds[k] = entry or rows.record("peer_bilstm", k, test, peer[test], fold_s, note)
        seconds += fold_s
    name = "peer: plain PyTorch BiLSTM"
    if len(folds) == args.neural_folds and all((rows.folder / f"peer_bilstm-fold{k}.npz").is_file() for k in folds):
        rows.add(name, peer[neural], neural, seconds, fold_note(args) + ", lr 0.002 constant")
    elif folds:
        rows.add_summary(name, folds, summary_note(folds, args.neural_folds, args.folds))


def _set(cfg: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = cfg
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def _config(model: str, options: list[str], args, train_file: Path, unlabelled: list[Path], out: Path) -> dict:
    cfg = {
        "output_dir": str(out),
        "data": {"path": str(train_file), "vocab_files": [str(p) for p in unlabelled]},
        "model": {"name": model, "dropout": 0.3 if model in ("bilstm", "bigru") else 0.2},
        "train": {
            "max_epochs": args.epochs,
            "batch_size": 64,
            "lr": LRS.get(model, 2e-3),
            "patience": 3,
            "class_weights": "off",
            "progress_bar": False,
            "diagnostics": False,
        },  # fmt: skip
        "split": {"seed": 0},
        "evaluate": {"bootstrap": 0},
        "plan": {"enabled": False},
    }
    if model == "bert_small":
        cfg["train"]["batch_size"] = 32
        cfg["model"].update(kwargs={"size": args.bert_size}, dropout=0.1)
    for option in options:
        if option not in TRICKS:
            raise SystemExit(f"--models: unknown option '+{option}'; known: {', '.join(TRICKS)}")
        for key, value in TRICKS[option].items():
            _set(cfg, key, value)
    return cfg


def _pseudo_count(fold: Path) -> str:
    """How many unlabelled reports a fold's training took as pseudo-labelled, from its data notes ('' if none)."""
    notes = json.loads((fold / "data.json").read_text()).get("notes", []) if (fold / "data.json").is_file() else []
    return "".join(f" ({n.split(' of ')[0]} reports added)" for n in notes if "pseudo-labels" in n)


def _local(cv_dir: Path, k: int) -> bool:
    return (cv_dir / f"fold{k}" / "predictions" / "test.csv").is_file()


def _train_folds(rows: Rows, key: str, cfg: dict, args, index: dict, setup: Callable, train: bool, here: bool):
    """Train (with `train`, and not --record-only) the folds of row `key` that neither this machine nor the ledger
    has (with `here`: every fold not on this machine, whose models a +pseudo row needs), each fold's wall seconds
    kept, and put every fold finished here that the ledger lacks into it. `setup` (pretraining, pseudo-labels) runs
    before the first fold trains, its seconds counted in that fold's; with nothing to train it only describes what an
    earlier run left (the ledger's recipe note)."""
    cv_dir, count = Path(cfg["output_dir"]) / key, args.neural_folds
    missing = [k for k in range(count) if not _local(cv_dir, k) and (here or not rows.ledger.get(key, k))]
    todo = missing if train and not args.record_only else []
    unrecorded = [k for k in range(count) if k not in todo and _local(cv_dir, k) and not rows.ledger.get(key, k)]
    if not todo and not unrecorded:
        return
    t = time.perf_counter()
    extra = setup(bool(todo))
    setup_s, times = time.perf_counter() - t, rows.folder / f"{key}-fold-seconds.json"
    spent = json.loads(times.read_text()) if times.is_file() else {}
    for k in sorted(todo + unrecorded):
        fold = cv_dir / f"fold{k}"
        if k in todo:  # a fold an earlier run stopped part way resumes and counts at least its training seconds
            t = time.perf_counter()
            cross_validate(cfg, args.folds, only_folds=[k])
            wall = round(time.perf_counter() - t + setup_s, 1)
            spent[str(k)], setup_s = max(wall, Run(fold).training.get("seconds", 0.0)), 0.0
            times.write_text(json.dumps(spent))
        if rows.ledger.get(key, k):  # a fold retrained here as a +pseudo source: the ledger keeps its first figures
            continue
        frame = pd.read_csv(fold / "predictions" / "test.csv", dtype={"id": str}).set_index("id")
        ids = [r for r in index if r in frame.index]  # in train-file order, as the fold's rows mask lists them
        test = np.zeros(len(rows.y), bool)
        test[[index[i] for i in ids]] = True
        p = frame.loc[ids, [f"p_{n}" for n in rows.names]].to_numpy(np.float64)
        note = f"{args.epochs} epochs max, lr {cfg['train']['lr']:g}{extra}{_pseudo_count(fold)}"
        rows.record(key, k, test, p, spent.get(str(k), Run(fold).training.get("seconds", 0.0)), note)
    if todo:  # cv.json and oof.csv list every fold here (a +pseudo row finds a source's folds through them)
        cross_validate(cfg, args.folds, only_folds=[k for k in range(count) if _local(cv_dir, k)])


def _key(token: str, args) -> tuple[str, str, list[str]]:
    """A --models token's cache key (a BERT row's settings in it, so rows of other sizes never reuse it)."""
    model, *options = token.split("+")
    tag = {"bert_mlm": f"-{bert_tag(args)}", "bert_small": f"-{args.bert_size}"}.get(model, "")
    return f"r{args.round}-" + token.replace("+", "-") + tag, model, options


def _rows(args) -> list[tuple[str, str, list[str]]]:
    """(key, model, options) of each --models token; a +pseudo row's key names the rows before it (its sources)."""
    out: list[tuple[str, str, list[str]]] = []
    for token in [m for m in args.models.split(",") if m]:
        key, model, options = _key(token, args)
        key += "-from-" + "_".join(k.split("-", 1)[1] for k, _, _ in out) if "pseudo" in options else ""
        out.append((key, model, options))
    return out


def _pseudo_sources(rows: Rows, args) -> set[str]:
    """The rows whose fold models must be on this machine: those before a +pseudo row that still has folds to train
    (it labels with them), retrained here when their folds ran elsewhere (their ledger figures stay)."""
    needed, keys = set(), _rows(args)
    for i, (key, _, options) in enumerate(keys):
        if (
            "pseudo" in options
            and not args.record_only
            and len(rows.ledger.folds(key, args.neural_folds)) < args.neural_folds
        ):
            needed |= {k for k, _, _ in keys[:i]}
    return needed


def meddx_rows(rows: Rows, ds, y, neural, args, train_file: Path, unlabelled: list[Path]) -> None:
    """One `meddx cv` per --models token (a row whose folds partly ran elsewhere: from the ledger's figures), then
    the ensembles of the rows whose predictions are all here. A +pseudo row's key names the rows it labels from."""
    out = Path(rows.folder).parent
    index = {r.id: i for i, r in enumerate(ds.records)}
    probs, cv_dirs, earlier, rows_here = [], [], [], _pseudo_sources(rows, args)
    for key, model, options in _rows(args):
        label = " + ".join([model, *options]) + (f" ({args.bert_size})" if model.startswith("bert") else "")
        cfg = _config("bert_small" if model == "bert_mlm" else model, options, args, train_file, unlabelled, out)
        cfg["name"] = key

        def setup(run: bool, cfg=cfg, model=model, options=options, sources=tuple(cv_dirs), before=tuple(earlier)):
            pseudo = "pseudo" in options
            note = pseudo_setup(cfg, list(sources), unlabelled, list(before)) if pseudo and run else ""
            note = note or (f"; pseudo-labels from the mean of {len(before)} earlier rows" if pseudo else "")
            return pretrained(cfg, model, options, args, out, run) + note

        cached = (rows.folder / f"{key}.npz").is_file()
        _train_folds(rows, key, cfg, args, index, setup, train=not cached, here=key in rows_here)
        folds = rows.ledger.folds(key, args.neural_folds)
        earlier.append(key)
        if cached or all(_local(out / key, k) for k in range(args.neural_folds)):
            note = f"{fold_span(args)}, {folds[0]['note'] if 0 in folds else ''}"
            seconds = sum(f["seconds"] for f in folds.values())

            def assemble(key=key, label=label, note=note, seconds=seconds):
                p = oof(out / key, ds.label_names, index, y, neural, args.neural_folds, "folds")
                return p, f"meddx {label}", note, seconds

            probs.append(rows.add_cached(key, assemble, neural))
            cv_dirs.append(out / key)
        elif folds:
            rows.add_summary(f"meddx {label}", folds, summary_note(folds, args.neural_folds, args.folds))
    if len(probs) > 1:
        ensembles(rows, probs, cv_dirs, ds, y, neural, args, index)
