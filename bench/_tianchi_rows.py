"""The rows of bench/tianchi.py: a resumable row store, the plain BiLSTM peer's rows and the meddx rows (models,
training options, pretraining, ensembles), all on the same folds."""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from _tianchi_peers import plain_lstm_peer

import meddx
from meddx.config import EvaluateConfig, SplitConfig
from meddx.data.sequences import build_vocab
from meddx.data.split import assign_splits
from meddx.evaluation.calibration import apply_platt, fit_platt
from meddx.evaluation.ensemble import ensemble_runs, greedy_weights
from meddx.evaluation.metrics import mlogloss
from meddx.run import Run
from meddx.tianchi import calibrate_oof, label_groups
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
    """The table's rows (probabilities on the rows they score), each kept on disk so a rerun with --out resumes."""

    def __init__(self, folder: Path, y: np.ndarray, folds: np.ndarray, on_change: Callable[[], object]):
        self.folder, self.y, self.folds, self.on_change, self.items = folder, y, folds, on_change, []

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


def fold_note(args) -> str:
    first = f"folds 0-{args.neural_folds - 1}" if args.neural_folds > 1 else "fold 0"
    return f"{first} of {args.folds}, {args.epochs} epochs max"


def peer_rows(rows: Rows, ds, y: np.ndarray, neural: np.ndarray, args) -> None:
    """The plain PyTorch BiLSTM on the same train/val/test rows as each `meddx cv` fold."""

    def compute():
        x = build_vocab([r.tokens for r in ds.records]).encode_all([r.tokens for r in ds.records])
        peer, seconds = np.zeros_like(y), 0.0
        for k in range(args.neural_folds):
            part = copy.deepcopy(ds)
            assign_splits(part, SplitConfig(folds=args.folds, fold=k))
            split = np.array([r.split for r in part.records])
            fold = lambda split=split: (plain_lstm_peer(x, y, split, args.epochs), "", "")  # noqa: E731
            peer[split == "test"], _, fold_s, _ = rows.cached(f"peer_bilstm-fold{k}", fold)  # a kill keeps the folds
            seconds += fold_s
        return peer[neural], "peer: plain PyTorch BiLSTM", fold_note(args) + ", lr 0.002 constant", seconds

    rows.add_cached("peer_bilstm", compute, neural)


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


def _pretrained(cfg: dict, model: str, options: list[str], args, out: Path) -> str:
    """Run the pretraining a row needs (MLM for bert_mlm, word2vec for +w2v) and point the config at it."""
    extra = ""
    if model == "bert_mlm":
        cfg["pretrain"] = {"dir": str(out / f"mlm-{_bert_tag(args)}"), "max_epochs": args.mlm_epochs,
                           "size": args.bert_size, "batch_size": 64, "lr": 1e-3, "masking": args.mlm_masking}  # fmt: skip
        folder = meddx.pretrain(cfg)
        info = json.loads((folder / "pretrain.json").read_text())
        cfg["model"] = {"name": "bert_small", "weights": str(folder / "encoder.pt"), "dropout": 0.1}
        minutes, loss = info.get("seconds_this_session", 0) / 60, info["final_val_mlm_loss"]
        extra = (
            f"; MLM {args.mlm_epochs} epochs ({args.mlm_masking} masking, {minutes:.0f} min), val MLM loss {loss:.2f}"
        )
    if "w2v" in options or "w2vfrozen" in options:
        cfg["pretrain"] = {"objective": "word2vec", "dir": str(out / "word2vec")}
        folder = meddx.pretrain(cfg)
        cfg["model"]["embeddings"] = str(folder)
        info = json.loads((folder / "pretrain.json").read_text())
        extra = f"; word2vec {info.get('seconds', float('nan')):.0f} s on the train + unlabelled descriptions"
    return extra


def _pseudo(cfg: dict, sources: list[Path], unlabelled: list[Path]) -> str:
    """Pseudo-labels from the mean of every earlier row's models (fold k's from their fold k, fold-safe)."""
    if not sources or not unlabelled:
        raise SystemExit("--models: +pseudo needs earlier rows to label with and unlabelled descriptions (round 1)")
    cfg["train"]["pseudo_labels"] = {"sources": [str(d) for d in sources], "data": [str(p) for p in unlabelled]}
    return f"; pseudo-labels (every label at most 0.05 or at least 0.95) from the mean of {len(sources)} earlier rows"


def timed_cv(cfg: dict, args, times: Path) -> tuple[Path, float]:
    """`meddx cv` one fold at a time, each fold's wall seconds kept in `times`, so a row resumed in another run still
    reports its whole time (a fold finished or stopped part way by an earlier run: at least its training seconds,
    which its checkpoints carry across a kill); the CV folder and the total."""
    spent = json.loads(times.read_text()) if times.is_file() else {}
    for k in range(args.neural_folds):
        if str(k) not in spent:
            t = time.perf_counter()
            cross_validate(cfg, args.folds, only_folds=[k])  # a fold an earlier run finished is reused at once
            fold = Path(cfg["output_dir"]) / cfg["name"] / f"fold{k}"
            spent[str(k)] = max(round(time.perf_counter() - t, 1), Run(fold).training.get("seconds", 0.0))
            times.write_text(json.dumps(spent))
    return cross_validate(cfg, args.folds, only_folds=list(range(args.neural_folds))), sum(spent.values())


def _pseudo_counts(cv_dir: Path, folds: int) -> str:
    """How many unlabelled reports each fold's training took as pseudo-labelled, from the folds' data notes."""
    counts = []
    for k in range(folds):
        notes = json.loads((cv_dir / f"fold{k}" / "data.json").read_text()).get("notes", [])
        counts += [n.split(" of ")[0] for n in notes if "pseudo-labels" in n] or ["0"]
    return f" ({'/'.join(counts)} reports added, folds 0-{folds - 1})"


def _bert_tag(args) -> str:
    """A BERT row's settings in its cache key, so rows of other sizes or MLM schedules never reuse it."""
    return f"{args.bert_size}-mlm{args.mlm_epochs}-{args.mlm_masking}"


def _oof(folder: Path, names: list[str], index: dict, y: np.ndarray, neural: np.ndarray, folds_run: int, split="oof"):
    """Probabilities in train-file order from an oof.csv (cv folder) or the test predictions of fold runs."""
    files = (
        [folder / "oof.csv"] if split == "oof" else [folder / f"fold{k}/predictions/test.csv" for k in range(folds_run)]
    )
    frame = pd.concat([pd.read_csv(f, dtype={"id": str}) for f in files])
    p = np.zeros_like(y)
    p[[index[i] for i in frame["id"]]] = frame[[f"p_{n}" for n in names]].to_numpy()
    return p[neural]


def meddx_rows(rows: Rows, ds, y, neural, args, train_file: Path, unlabelled: list[Path]) -> None:
    """One `meddx cv` per --models token, then the ensembles of them all."""
    out = Path(rows.folder).parent
    index = {r.id: i for i, r in enumerate(ds.records)}
    probs, cv_dirs = [], []
    for token in [m for m in args.models.split(",") if m]:
        model, *options = token.split("+")
        key = (
            f"r{args.round}-"
            + token.replace("+", "-")
            + {"bert_mlm": f"-{_bert_tag(args)}", "bert_small": f"-{args.bert_size}"}.get(model, "")
        )

        def train(model=model, options=options, key=key):  # called at once: cv_dirs holds the earlier rows
            cfg = _config("bert_small" if model == "bert_mlm" else model, options, args, train_file, unlabelled, out)
            cfg["name"] = key
            note = _pseudo(cfg, list(cv_dirs), unlabelled) if "pseudo" in options else ""
            t = time.perf_counter()
            extra = _pretrained(cfg, model, options, args, out) + note
            pretrain_s = time.perf_counter() - t
            cv_dir, folds_s = timed_cv(cfg, args, rows.folder / f"{key}-fold-seconds.json")
            p = _oof(cv_dir, ds.label_names, index, y, neural, args.neural_folds)
            extra += _pseudo_counts(cv_dir, args.neural_folds) if "pseudo" in options else ""
            label = " + ".join([model, *options]) + (f" ({args.bert_size})" if model.startswith("bert") else "")
            note = fold_note(args) + f", lr {cfg['train']['lr']:g}{extra}"
            return p, f"meddx {label}", note, pretrain_s + folds_s

        probs.append(rows.add_cached(key, train, neural))
        cv_dirs.append(out / key)
    if len(probs) > 1:
        ensembles(rows, probs, cv_dirs, ds, y, neural, args, index)


def ensembles(rows: Rows, probs, cv_dirs, ds, y, neural, args, index) -> None:
    """Weights chosen on each fold's val (`meddx ensemble --weights val`), and when every fold ran, cross-fitted
    out-of-fold weights (fold k's from the other folds' OOF rows only): neither lets a scored row choose."""
    note = fold_note(args)

    def val_weighted():
        weights = []
        for k in range(args.neural_folds):
            shutil.rmtree(rows.folder / "ensemble_val" / f"fold{k}", ignore_errors=True)
            ens = ensemble_runs([d / f"fold{k}" for d in cv_dirs], rows.folder / "ensemble_val" / f"fold{k}",
                                EvaluateConfig(bootstrap=0), weights="val")  # fmt: skip
            weights.append(json.loads((ens.path / "ensemble.json").read_text())["weights"])
        mean_w = ", ".join(f"{d.name} {w:.2f}" for d, w in zip(cv_dirs, np.mean(weights, 0)) if w > 0)
        p = _oof(rows.folder / "ensemble_val", ds.label_names, index, y, neural, args.neural_folds, "folds")
        return p, "meddx ensemble, weights chosen on each fold's val", note + f"; mean weights: {mean_w}"

    rows.add_cached("ensemble_val-" + "+".join(d.name for d in cv_dirs), val_weighted, neural)
    rows.add_cached("ensemble_val_platt-" + "+".join(d.name for d in cv_dirs), lambda: _val_platt(rows, ds, y, neural,
                    index, args), neural)  # fmt: skip
    if args.neural_folds == args.folds:
        blended, used = np.zeros_like(probs[0]), np.zeros(len(probs))
        fold_of = rows.folds[neural]
        for k in range(args.folds):
            other, this = fold_of != k, fold_of == k
            w = greedy_weights([p[other] for p in probs], y[neural][other], "multilabel")
            blended[this] = sum(wi * p[this] for wi, p in zip(w, probs))
            used += w / args.folds
        mean_w = ", ".join(f"{d.name} {w:.2f}" for d, w in zip(cv_dirs, used) if w > 0)
        name = "meddx ensemble, cross-fitted out-of-fold weights"
        rows.add(name, blended, neural, 0, note + f"; mean weights: {mean_w}")
        scaled = calibrate_oof(y[neural], blended, fold_of, label_groups(ds.label_names))
        rows.add(name + ", Platt-scaled out of fold", scaled, neural, 0, note + "; `meddx tianchi blend`'s calibration")


def _val_platt(rows: Rows, ds, y, neural, index, args) -> tuple:
    """The val-weighted ensemble of each fold, Platt-scaled (regions and types apart) by slopes fitted on its val."""
    groups, names = label_groups(ds.label_names), ds.label_names
    for k in range(args.neural_folds):
        folder = rows.folder / "ensemble_val" / f"fold{k}" / "predictions"
        val, test = (pd.read_csv(folder / f"{s}.csv", dtype={"id": str}) for s in ("val", "test"))
        cols = [f"p_{n}" for n in names]
        slopes = fit_platt(val[names].to_numpy(np.float64), val[cols].to_numpy(np.float64), groups)
        test[cols] = apply_platt(test[cols].to_numpy(np.float64), groups, slopes)
        (rows.folder / "ensemble_val_platt" / f"fold{k}" / "predictions").mkdir(parents=True, exist_ok=True)
        test.to_csv(rows.folder / "ensemble_val_platt" / f"fold{k}" / "predictions" / "test.csv", index=False)
    p = _oof(rows.folder / "ensemble_val_platt", names, index, y, neural, args.neural_folds, "folds")
    return p, "meddx ensemble, weights and Platt slopes chosen on each fold's val", fold_note(args)
