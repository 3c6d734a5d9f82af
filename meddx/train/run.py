"""`fit(config) -> Run`: records to a trained model in a run folder; `load_run(path)` reloads it."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from meddx.config import RunConfig, load_config, save_config, validate_config
from meddx.data.images import file_record
from meddx.data.readers import read_dataset
from meddx.data.records import SPLITS, DataSet, Record
from meddx.data.split import assign_splits, enforce_no_leakage
from meddx.data.sequences import (
    SequenceDataset,
    Vocab,
    build_vocab,
    is_sequence,
    length_grouped_sampler,
    read_descriptions,
    trim_padding,
)
from meddx.data.tensors import ImageDataset, Preprocess, resolve_preprocess
from meddx.errors import ConfigError, DataError
from meddx.models import MODEL_INFO, create_model, min_input_size
from meddx.train.losses import balanced_class_weights, bce_weights, is_imbalanced

RUN_DIR_ENV = "MEDDX_RUN_DIR"


def is_rank_zero() -> bool:
    """True in the process that writes files (always, outside distributed runs)."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def _new_run_dir(cfg: RunConfig) -> Path:
    """runs/<name> (or <data>-<model>-<time>), made unique; DDP workers reuse rank 0's through the environment."""
    if not is_rank_zero():  # a DDP worker: it writes nothing, but must agree on the folder
        if os.environ.get(RUN_DIR_ENV):
            return Path(os.environ[RUN_DIR_ENV])
        if not cfg.name:
            raise ConfigError("multi-node runs need a run name (--name) so that every node agrees on the run folder")
        return Path(cfg.output_dir) / cfg.name
    if cfg.name:
        name = cfg.name
    else:
        data = cfg.data.path if isinstance(cfg.data.path, str) else next(iter(cfg.data.path.values()))
        name = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(data).stem)}-{cfg.model.name}-{datetime.now():%Y%m%d-%H%M%S}"
    base = Path(cfg.output_dir) / name
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    path.mkdir(parents=True)
    os.environ[RUN_DIR_ENV] = str(path.resolve())
    return path


def prepare_data(cfg: RunConfig) -> tuple[DataSet, dict]:
    """Read, split and leakage-check the data of a run; returns the data set and the leakage report."""
    ds = read_dataset(cfg.data)
    assign_splits(ds, cfg.split)
    leakage = enforce_no_leakage(ds, cfg.split)
    return ds, leakage.to_dict()


def _loss_weights(cfg: RunConfig, ds: DataSet) -> dict:
    train_labels = ds.subset("train").labels
    on = cfg.train.class_weights == "on" or (cfg.train.class_weights == "auto" and is_imbalanced(train_labels, ds.task))
    if not on:
        return {}
    if ds.task == "multiclass":
        return {"class_weight": balanced_class_weights(train_labels.argmax(1), len(ds.label_names)).tolist()}
    w_pos, w_neg = bce_weights(train_labels)
    return {"pos_weight": w_pos.tolist(), "neg_weight": w_neg.tolist()}


def fit(config: RunConfig | dict | str | Path) -> Run | None:
    """Train one model as the config says; the run folder gets config, split, checkpoints, predictions.

    Returns the Run in the process that wrote it, None in the other processes of a distributed run.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar

    from meddx.train.collapse import CollapseMonitor
    from meddx.train.module import Classifier

    cfg = load_config(config) if isinstance(config, (str, Path)) else validate_config(config)
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    ds, leakage = prepare_data(cfg)
    parts = {s: ds.subset(s).records for s in SPLITS}
    sequence = is_sequence(ds)
    if sequence:
        if cfg.train.mixup:
            raise ConfigError("train.mixup mixes pixel values and applies to images only; for token sequences use "
                              "train.token_dropout")
        prep = resolve_sequence(cfg, ds)
        datasets = {s: SequenceDataset(parts[s], prep) for s in SPLITS if parts[s]}
        in_chans, model_kwargs, augment = 1, {**prep.model_kwargs(), **cfg.model.kwargs}, {"enabled": False}
    else:
        prep = resolve_preprocess(cfg.data, parts["train"])
        need = min_input_size(cfg.model.name)
        if min(prep.image_size) < need:
            raise ConfigError(f"model '{cfg.model.name}' needs images of at least {need} px; set data.image_size >= {need}")
        datasets = {s: ImageDataset(parts[s], prep) for s in SPLITS if parts[s]}  # decodes every file now: bad ones fail here
        in_chans, model_kwargs, augment = prep.channels, dict(cfg.model.kwargs), cfg.train.augment.model_dump()
    loaders = {}
    for s in ("train", "val"):
        grouped = sequence and s == "train" and cfg.train.group_by_length
        loaders[s] = DataLoader(
            datasets[s], batch_size=cfg.train.batch_size, shuffle=(s == "train" and not grouped),
            sampler=length_grouped_sampler(datasets[s].inputs, cfg.train.batch_size) if grouped else None,
            collate_fn=trim_padding if sequence else None,
            num_workers=cfg.train.num_workers, drop_last=(s == "train" and len(parts[s]) > cfg.train.batch_size),
            persistent_workers=cfg.train.num_workers > 0,
        )
    run_dir = _new_run_dir(cfg)
    if is_rank_zero():
        _write_data_files(run_dir, cfg, ds, prep, leakage)
    loss_weights = _loss_weights(cfg, ds)
    module = Classifier(
        cfg.model.name, in_chans, len(ds.label_names), ds.task, lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay, max_epochs=cfg.train.max_epochs, dropout=cfg.model.dropout,
        augment=augment, weights=cfg.model.weights, model_kwargs=model_kwargs,
        token_dropout=cfg.train.token_dropout, **loss_weights, **_finetune_args(cfg),
    )
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val_loss", mode="min")
    # Lightning 2.6's save_last only follows epochs that improved `best`; an unmonitored checkpoint is every epoch's
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1)
    collapse = CollapseMonitor(ds.label_names)
    callbacks = [best, last, collapse, EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.patience), LearningRateMonitor("epoch")]
    if cfg.train.progress_bar:
        callbacks.append(RichProgressBar(leave=True))
    callbacks = _extra_callbacks(cfg, ds, module, callbacks)
    trainer = _make_trainer(cfg, run_dir, callbacks)
    initial_val_loss = _mean_loss(module, loaders["val"])
    started = time.perf_counter()
    trainer.fit(module, loaders["train"], loaders["val"])
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    checkpoint = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    if cfg.train.swa:  # the averaged weights (BatchNorm statistics re-estimated by the callback), not the best epoch
        weights = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
    torch.save(weights, run_dir / "model.pt")
    summary = {
        "best_epoch": int(checkpoint["epoch"]) + 1, "epochs_run": trainer.current_epoch,
        "best_val_loss": float(best.best_model_score), "seconds": round(seconds, 1),
        "train_samples_per_second": round(len(parts["train"]) * trainer.current_epoch / seconds, 1),
        "initial_val_loss": initial_val_loss, "loss_weights": loss_weights, "history": _history(run_dir / "logs" / "metrics.csv"),
        "collapse": collapse.summary(),
        **_finetune_summary(cfg, module),
    }
    (run_dir / "training.json").write_text(json.dumps(summary, indent=2))
    run = Run(run_dir)
    run.write_predictions({s: d for s, d in datasets.items() if s != "train"})
    return run


def _finetune_args(cfg: RunConfig) -> dict:
    """Classifier arguments for transfer learning and regularisation (train.init_from, finetune_depth, ...)."""
    t = cfg.train
    return {"init_from": t.init_from, "finetune_depth": t.finetune_depth, "backbone_lr_mult": t.backbone_lr_mult,
            "mixup": t.mixup, "label_smoothing": t.label_smoothing}


def _extra_callbacks(cfg: RunConfig, ds: DataSet, module, callbacks: list) -> list:
    """Gradual unfreezing, SWA (which replaces early stopping: it averages to the last epoch), TensorBoard diagnostics."""
    from pytorch_lightning.callbacks import EarlyStopping, StochasticWeightAveraging

    from meddx.models.finetune import parse_depth
    from meddx.train.callbacks import GradualUnfreezing, ValDiagnostics

    t = cfg.train
    depth = parse_depth(t.finetune_depth)
    if t.unfreeze_every and depth is not None:
        callbacks.append(GradualUnfreezing(depth, t.unfreeze_every))
    if t.swa:
        module.keep_frozen_bn_stats = False
        callbacks = [c for c in callbacks if not isinstance(c, EarlyStopping)]
        callbacks.append(StochasticWeightAveraging(swa_lrs=t.swa_lr or t.lr / 10, swa_epoch_start=t.swa_epoch_start))
    if t.diagnostics:
        callbacks.append(ValDiagnostics(ds.label_names))
    return callbacks


def _finetune_summary(cfg: RunConfig, module) -> dict:
    """What training.json records about initialisation, freezing and averaging."""
    out: dict = {}
    if cfg.train.init_from:
        out["init_from"] = {"source": str(cfg.train.init_from), **(module.init_report or {})}
    model = module.model
    out["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)  # at the end
    out["total_parameters"] = sum(p.numel() for p in model.parameters())
    if cfg.train.swa:
        out["model_pt"] = "swa"
    return out


def resolve_sequence(cfg: RunConfig, ds: DataSet) -> Vocab:
    """The vocabulary (given, next to pretrained weights, or built from train + vocab_files); fills model.kwargs.

    A pretrained encoder folder (`meddx pretrain`) brings its vocab.json and model_kwargs.json, so the fine-tuned
    model matches it; the resolved values are written back into the config saved with the run.
    """
    from meddx.models.sequence import resolve_size

    if cfg.model.name not in MODEL_INFO or MODEL_INFO[cfg.model.name].kind != "sequence":
        seq = [n for n, i in MODEL_INFO.items() if i.kind == "sequence"]
        raise ConfigError(f"model '{cfg.model.name}' is an image model; token sequences need one of {seq}")
    vocab_path = cfg.data.vocab
    source = cfg.model.weights or cfg.train.init_from  # an MLM folder's encoder.pt, or a sequence run folder
    if source:
        folder = Path(source) if Path(source).is_dir() else Path(source).parent
        if vocab_path is None and (folder / "vocab.json").is_file():
            vocab_path = str(folder / "vocab.json")
        if (folder / "model_kwargs.json").is_file():
            cfg.model.kwargs = {**json.loads((folder / "model_kwargs.json").read_text()), **cfg.model.kwargs}
        elif (folder / "config.yaml").is_file():
            cfg.model.kwargs = {**load_config(folder / "config.yaml").model.kwargs, **cfg.model.kwargs}
    if vocab_path:
        vocab = Vocab.load(vocab_path)
        cfg.data.vocab = vocab_path
    else:
        vocab = build_vocab([r.tokens for r in ds.records] + read_descriptions(cfg.data.vocab_files), cfg.data.max_len)
    if cfg.model.kwargs.get("size") == "auto":
        cfg.model.kwargs = {**cfg.model.kwargs, "size": resolve_size("auto")}
    return vocab


def _write_data_files(run_dir: Path, cfg: RunConfig, ds: DataSet, prep: Preprocess | Vocab, leakage: dict) -> None:
    """config.yaml, preprocess.json (vocab.json for sequences), split.csv and data.json: what the run folder needs."""
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    prep.save(run_dir / ("vocab.json" if isinstance(prep, Vocab) else "preprocess.json"))
    ds.to_frame().to_csv(run_dir / "split.csv", index=False)
    sizes = {}
    for s in SPLITS:
        part = ds.subset(s).records
        sizes[s] = {"samples": len(part), "patients": len({r.patient_id for r in part})}
    data_info = {"origin": ds.origin, "task": ds.task, "label_names": ds.label_names, "notes": ds.notes,
                 "patients_known": ds.patients_known, "leakage": leakage, "sizes": sizes}
    (run_dir / "data.json").write_text(json.dumps(data_info, indent=2))


def _make_trainer(cfg: RunConfig, run_dir: Path, callbacks: list):
    """Lightning Trainer with TensorBoard and CSV loggers; DDP (gloo on CPU, NCCL on GPU) beyond one device."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    strategy = "auto"
    if cfg.train.devices * cfg.train.num_nodes > 1:
        from pytorch_lightning.strategies import DDPStrategy

        on_gpu = cfg.train.accelerator in ("gpu", "cuda") or (cfg.train.accelerator == "auto" and torch.cuda.is_available())
        strategy = DDPStrategy(process_group_backend="nccl" if on_gpu else "gloo")
    return pl.Trainer(
        max_epochs=cfg.train.max_epochs, accelerator=cfg.train.accelerator, devices=cfg.train.devices,
        num_nodes=cfg.train.num_nodes, strategy=strategy, precision=cfg.train.precision, callbacks=callbacks,
        logger=[TensorBoardLogger(save_dir=str(run_dir), name="tb", version=""),
                CSVLogger(save_dir=str(run_dir), name="logs", version="")],
        enable_progress_bar=cfg.train.progress_bar, enable_model_summary=False, log_every_n_steps=10,
        limit_train_batches=cfg.train.limit_train_batches, default_root_dir=str(run_dir),
    )


def _history(csv: Path) -> list[dict]:
    """One row per epoch from Lightning's CSV log: train/val loss, val AUC, spread of val outputs."""
    if not csv.is_file():
        return []
    df = pd.read_csv(csv)
    cols = [c for c in ("train_loss", "val_loss", "val_auc", "val_pred_spread") if c in df.columns]
    rows = df.groupby("epoch")[cols].first().reset_index()
    return [{"epoch": int(r["epoch"]) + 1, **{c: round(float(r[c]), 6) for c in cols if pd.notna(r[c])}}
            for _, r in rows.iterrows()]


def _mean_loss(module, loader: DataLoader) -> float:
    """The module's loss over a loader, in eval mode (the untrained model's val loss, for comparison)."""
    module.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for x, y in loader:
            total += float(module.loss(module(x), y)) * len(x)
            n += len(x)
    module.train()
    return total / max(n, 1)


class Run:
    """A run folder: its config, preprocessing, model and predictions."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise ConfigError(f"{self.path}: not a meddx run folder (no config.yaml)")

    def __repr__(self) -> str:
        return f"Run('{self.path}')"

    @cached_property
    def config(self) -> RunConfig:
        return load_config(self.path / "config.yaml")

    @cached_property
    def preprocess(self) -> Preprocess:
        return Preprocess.load(self.path / "preprocess.json")

    @property
    def is_sequence(self) -> bool:
        """True for token-sequence runs (vocab.json instead of preprocess.json)."""
        return (self.path / "vocab.json").is_file()

    @cached_property
    def vocab(self) -> Vocab:
        return Vocab.load(self.path / "vocab.json")

    @cached_property
    def data_info(self) -> dict:
        return json.loads((self.path / "data.json").read_text())

    @property
    def label_names(self) -> list[str]:
        return self.data_info["label_names"]

    @property
    def task(self) -> str:
        return self.data_info["task"]

    @cached_property
    def model(self) -> torch.nn.Module:
        """The best model, rebuilt from the config and loaded without pickle execution."""
        ensemble = self.path / "ensemble.json"
        if ensemble.is_file():  # written by meddx.evaluate.ensemble: the members' probabilities averaged
            from meddx.models.ensemble import ProbabilityAverage

            info = json.loads(ensemble.read_text())
            return ProbabilityAverage([Run(m).model for m in info["members"]], self.task, info.get("weights")).eval()
        weights = self.path / "model.pt"
        if not weights.is_file():
            raise ConfigError(f"{self.path}: no model.pt; the run did not finish training")
        if self.is_sequence:
            kwargs = {**self.vocab.model_kwargs(), **self.config.model.kwargs}
            model = create_model(self.config.model.name, 1, len(self.label_names), dropout=self.config.model.dropout, **kwargs)
        else:
            model = create_model(self.config.model.name, self.preprocess.channels, len(self.label_names),
                                 dropout=self.config.model.dropout, **self.config.model.kwargs)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval()

    def predict_proba(self, inputs: list[Record | str | Path] | Dataset, batch_size: int = 256) -> np.ndarray:
        """(N, L) probabilities for records, file paths, or an ImageDataset already decoded (token records for sequences)."""
        from meddx.train.module import probabilities

        if isinstance(inputs, Dataset):
            data = inputs
        elif self.is_sequence:
            data = SequenceDataset(list(inputs), self.vocab)
        else:
            data = ImageDataset(_as_records(inputs), self.preprocess, preload=False)
        out, model = [], self.model  # built outside inference mode, so its weights stay usable for gradients (Grad-CAM)
        with torch.inference_mode():
            for x, _ in DataLoader(data, batch_size=batch_size, collate_fn=trim_padding if self.is_sequence else None):
                out.append(probabilities(model(x), self.task).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)))

    def predict(self, inputs: list[Record | str | Path] | ImageDataset) -> pd.DataFrame:
        """One row per input: id and a probability column per label."""
        records = inputs.records if isinstance(inputs, (ImageDataset, SequenceDataset)) else _as_records(inputs)
        probs = self.predict_proba(inputs if isinstance(inputs, (ImageDataset, SequenceDataset)) else records)
        df = pd.DataFrame({"id": [r.id for r in records]})
        for j, name in enumerate(self.label_names):
            df[f"p_{name}"] = probs[:, j]
        return df

    def write_predictions(self, datasets: dict[str, ImageDataset]) -> None:
        """predictions/<split>.csv: id, patient_id, true labels, probabilities."""
        (self.path / "predictions").mkdir(exist_ok=True)
        for split, data in datasets.items():
            df = self.predict(data)
            df.insert(1, "patient_id", [r.patient_id for r in data.records])
            for j, name in enumerate(self.label_names):
                df.insert(2 + j, name, data.labels[:, j].numpy().astype(float))
            df.to_csv(self.path / "predictions" / f"{split}.csv", index=False, float_format="%.9g")

    def predictions(self, split: str = "test") -> pd.DataFrame:
        p = self.path / "predictions" / f"{split}.csv"
        if not p.is_file():
            raise DataError(f"{self.path}: no predictions for split '{split}'")
        return pd.read_csv(p, dtype={"id": str, "patient_id": str})


def _as_records(inputs: list[Record | str | Path]) -> list[Record]:
    return [r if isinstance(r, Record) else file_record(r) for r in inputs]


def load_run(path: str | Path) -> Run:
    """Open a run folder written by `fit`."""
    return Run(path)
