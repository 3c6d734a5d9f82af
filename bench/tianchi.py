"""Tianchi 2021 report task, rounds 1 and 2: out-of-fold scores of baselines, two peers and meddx's sequence models
and training options, each row beside the peers measured on the same rows in the same run.

Cheap rows (all-zero, prior, the scikit-learn peer: TF-IDF over token 1-2-grams + one-vs-rest logistic regression)
run on all folds. Neural rows (the plain hand-written PyTorch BiLSTM peer and the meddx rows, trained through
`meddx cv` on the same iterative-stratified folds) run on `--neural-folds` folds. A meddx row is `model[+option...]`:
options are the training tricks in TRICKS, `w2v` (word2vec vectors from `meddx pretrain`), `pseudo` (pseudo-labels on
the unlabelled descriptions from the mean of every earlier row's models, fold k's from fold k), and `bert_mlm` is BERT
after MLM pretraining. Ensembles: weights chosen on each fold's val (always), and, when every fold ran, a cross-fitted blend
(fold k's weights chosen out of fold on the other folds only). Figures go into docs/benchmarks.md.

    PYTHONPATH=. .venv/bin/python bench/tianchi.py --round 1 --neural-folds 5 --epochs 12 --models bilstm,rcnn+fgm
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from meddx.config import DataConfig
from meddx.data.readers import read_dataset
from meddx.data.split import _patient_table, fold_indices

sys.path.insert(0, str(Path(__file__).parent))
from _tianchi_ledger import RESULTS, Ledger  # noqa: E402
from _tianchi_peers import sklearn_peer  # noqa: E402
from _tianchi_rows import MODELS, Rows, meddx_rows, peer_rows  # noqa: E402
from _tianchi_table import render  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROUNDS = {  # folder, labelled file, unlabelled files (vocabulary, MLM and word2vec corpus)
    1: ("tianchi_round1", "track1_round1_train_20210222.csv", ["track1_round1_testA_20210222.csv", "track1_round1_testB.csv"]),
    2: ("tianchi_round2", "train.csv", []),
}  # fmt: skip


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--round", type=int, choices=(1, 2), default=1)
    ap.add_argument("--data", default=None, help="The round's folder (default: ../shared/data/tianchi_roundN).")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--neural-folds", type=int, default=1, help="How many of the folds the neural rows run on.")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--bert-size", default="auto", help="bert_small size: tiny, cpu, gpu or auto.")
    ap.add_argument("--mlm-epochs", type=int, default=5)
    ap.add_argument("--mlm-masking", choices=("token", "ngram"), default="ngram", help="MLM: tokens or whole n-grams.")
    ap.add_argument("--out", default=None, help="Folder for runs (default: a temporary one); a rerun resumes.")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--record-only", action="store_true", help="Train nothing: put the folds finished in --out into the "
                    "ledger (bench/results/tianchi-rN) and write the table from what is there.")  # fmt: skip
    ap.add_argument("--ledger", default=None, help="The ledger's root folder (default: bench/results).")
    ap.add_argument("--section", default="", help="Write the table to its own section (KEY-SECTION), e.g. bert.")
    return ap.parse_args()


def main() -> None:
    args = arguments()
    folder, train_file, unlabelled = ROUNDS[args.round]
    data = Path(args.data or SHARED / folder)
    out = Path(args.out or tempfile.mkdtemp(prefix="tianchi-bench-"))
    ds = read_dataset(DataConfig(path=str(data / train_file)))
    y = ds.labels.astype(np.float64)
    patients, table = _patient_table(ds, ds.records)  # duplicate descriptions (round 2) stay in one fold
    fold_of = dict(zip(patients, fold_indices(table, ds.task, args.folds, seed=0)))
    folds = np.array([fold_of[r.patient_id] for r in ds.records])
    tag = f"{args.epochs}ep-{args.folds}f" + (f"-{data.name}" if args.data else "")
    ledger = Ledger(args.round, Path(args.ledger) if args.ledger else RESULTS, tag)
    rows = Rows(
        out / f"rows-r{args.round}", y, folds, ds.label_names, ledger, lambda: render(rows, y, ds.label_names, args)
    )
    every = np.ones(len(y), bool)
    prior = np.zeros_like(y)
    for k in range(args.folds):
        prior[folds == k] = y[folds != k].mean(0)
    rows.add("all-zero", np.zeros_like(y), every, 0, f"{args.folds}-fold OOF")
    rows.add("prior (train label shares)", prior, every, 0, f"{args.folds}-fold OOF")
    texts = [" ".join(map(str, r.tokens)) for r in ds.records]
    rows.add_cached(
        "tfidf",
        lambda: (sklearn_peer(texts, y, folds), "peer: TF-IDF 1-2-grams + OvR logistic", f"{args.folds}-fold OOF"),
        every,
    )
    neural = np.isin(folds, range(args.neural_folds))
    peer_rows(rows, ds, y, neural, args)
    meddx_rows(rows, ds, y, neural, args, data / train_file, [data / f for f in unlabelled])
    print(render(rows, y, ds.label_names, args))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
