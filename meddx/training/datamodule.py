"""The run's data as a LightningDataModule: read, split, leakage gate, preprocessing or vocabulary, loaders."""

from __future__ import annotations

import difflib
import json
import warnings
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from meddx.config import RunConfig, load_config
from meddx.data.cache import decoded_images
from meddx.data.leakage import enforce_no_leakage
from meddx.data.readable import drop_unreadable
from meddx.data.readers import read_dataset
from meddx.data.records import SPLITS, DataSet
from meddx.data.reports import read_descriptions
from meddx.data.sequences import PAD, SequenceDataset, Vocab, build_vocab, is_sequence, trim_padding
from meddx.data.split import assign_splits
from meddx.data.tensors import ImageDataset, Preprocess, base_preprocess, decode_settings, fill_statistics
from meddx.errors import ConfigError, MeddxError, MeddxWarning
from meddx.models import MODEL_INFO, min_input_size
from meddx.models.sequence import resolve_size
from meddx.run import CONFIG, VOCAB
from meddx.training.distributed import grouped, is_rank_zero, share
from meddx.training.pretrained import weights_overlap
from meddx.training.pseudo import pseudo_records
from meddx.training.sampling import EpochLengthGrouped, EpochShuffle


class RunDataModule(pl.LightningDataModule):
    """Reads, splits and leakage-gates the data of a run once, resolves its preprocessing (images) or vocabulary (token
    sequences, written back into `cfg`), and builds the train, val and prediction loaders."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.dataset: DataSet | None = None
        self.datasets: dict[str, Dataset] = {}
        self.prep: Preprocess | Vocab | None = None
        self.leakage: dict = {}

    def read(self) -> DataSet:
        """Read, split and leakage-gate the data once (no image is decoded yet); the plan reads this. In a process
        group only rank 0 reads and hashes the files; the others get its records."""
        if self.dataset is None:
            try:
                mine = self._read() if is_rank_zero() or not grouped() else None
            except MeddxError as e:  # every process stops with rank 0's one line, none waits for it
                mine = e
            got = share(mine)
            if isinstance(got, MeddxError):
                raise got
            self.dataset, self.leakage = got
        return self.dataset

    def _read(self) -> tuple[DataSet, dict]:
        ds = read_dataset(self.cfg.data)
        assign_splits(ds, self.cfg.split)
        leakage = enforce_no_leakage(ds, self.cfg.split).to_dict()
        if self.cfg.data.skip_unreadable:  # after the hashes: a file read for them is not decoded again
            leakage["unreadable"] = drop_unreadable(ds)
        if seen := weights_overlap(self.cfg.train.init_from, ds):  # the initial weights' own data: said, not stopped
            warnings.warn(seen, MeddxWarning, stacklevel=2)
            ds.notes.append(seen)
            leakage["initial_weights_saw"] = seen
        extra, note = pseudo_records(self.cfg, ds)  # after the gate: they join train only, never val or test
        if extra:
            ds.records += extra
            ds.notes.append(note)
        return ds, leakage

    def setup(self, stage: str | None = None) -> None:
        """Everything before the first step; image files are decoded here, so bad ones fail before training."""
        if self.datasets:
            return
        ds = self.read()
        parts = {s: ds.subset(s).records for s in SPLITS}
        if is_sequence(ds):
            if self.cfg.train.mixup:
                raise ConfigError(
                    "train.mixup mixes pixel values and applies to images only; for token sequences use "
                    "train.token_dropout"
                )
            self.prep = resolve_vocab(self.cfg, ds)
            self.datasets = {s: SequenceDataset(parts[s], self.prep) for s in SPLITS if parts[s]}
        else:
            self.prep = base_preprocess(self.cfg.data, parts["train"][0])
            need = min_input_size(self.cfg.model.name)
            if min(self.prep.image_size) < need:
                raise ConfigError(
                    f"model '{self.cfg.model.name}' needs images of at least {need} px; set data.image_size >= {need}"
                )
            decoded = None
            if self.cfg.data.cache:  # decoded once for every split, run and process, then read from the page cache
                decoded = decoded_images(
                    ds.records, self.prep.raw, decode_settings(self.prep), skipping=self.cfg.data.skip_unreadable
                )
            fill_statistics(self.prep, parts["train"], decoded)
            t = self.cfg.train
            shared = t.devices * t.num_nodes > 1 and decoded is not None  # one copy for all processes, not one each
            self.datasets = {
                s: ImageDataset(parts[s], self.prep, preload=False if shared else None, decoded=decoded)
                for s in SPLITS
                if parts[s]
            }

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.prep, Vocab)

    @property
    def in_chans(self) -> int:
        return 1 if self.is_sequence else self.prep.channels

    @property
    def model_kwargs(self) -> dict:
        """Builder arguments the data fixes: a vocabulary's size and length (none for images)."""
        return self.prep.model_kwargs() if self.is_sequence else {}

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """A loader over one split; sequence batches are cut to their longest row."""
        t = self.cfg.train
        data = self.datasets[split]
        sampler = None
        if shuffle and self.is_sequence and t.group_by_length:
            lengths = (data.inputs != PAD).sum(1).tolist()
            sampler = EpochLengthGrouped(lengths, t.batch_size, t.seed, self._epoch_to_train)
        elif shuffle:
            sampler = EpochShuffle(len(data), t.seed, self._epoch_to_train)
        # the training loader keeps its place (torchdata's StatefulDataLoader, saved in every checkpoint by
        # Lightning): a run resumed from a mid-epoch checkpoint trains the rest of that epoch, no batch twice
        return (StatefulDataLoader if shuffle else DataLoader)(
            data,
            batch_size=t.batch_size,
            sampler=sampler,
            collate_fn=trim_padding if self.is_sequence else None,
            num_workers=t.num_workers,
            pin_memory=t.pin_memory,
            drop_last=shuffle and len(data) > t.batch_size,
            persistent_workers=t.num_workers > 0,
        )

    def _epoch_to_train(self) -> int:
        """The epoch a training iteration is for: processed epochs (a resumed run's restored count, even before its
        loop has moved on from a checkpoint written at the previous epoch's end)."""
        return self.trainer.fit_loop.epoch_progress.current.processed if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")


def _known_model(name: str) -> bool:
    """A registered model or a timm name."""
    import timm

    return name in MODEL_INFO or timm.is_model(name)


def resolve_vocab(cfg: RunConfig, ds: DataSet) -> Vocab:
    """The vocabulary (given, next to pretrained weights, or built from train + vocab_files); fills model.kwargs.

    A pretrained encoder folder (`meddx pretrain`) brings its vocab.json and model_kwargs.json, so the fine-tuned
    model matches it; the resolved values are written back into the config saved with the run.
    """
    if cfg.model.name not in MODEL_INFO or MODEL_INFO[cfg.model.name].kind != "sequence":
        seq = [n for n, i in MODEL_INFO.items() if i.kind == "sequence"]
        near = difflib.get_close_matches(cfg.model.name, seq, n=1)
        what = "an image model" if _known_model(cfg.model.name) else "no model meddx knows" + (
            f" (did you mean '{near[0]}'?)" if near else "")  # fmt: skip
        raise ConfigError(f"model '{cfg.model.name}' is {what}; token sequences need one of {seq}")
    vocab_path = cfg.data.vocab
    source = cfg.model.weights or cfg.train.init_from or cfg.model.embeddings  # MLM/word2vec folder or a run folder
    if source:
        folder = Path(source) if Path(source).is_dir() else Path(source).parent
        if vocab_path is None and (folder / VOCAB).is_file():
            vocab_path = str(folder / VOCAB)
        if (folder / "model_kwargs.json").is_file():
            cfg.model.kwargs = {**json.loads((folder / "model_kwargs.json").read_text()), **cfg.model.kwargs}
        elif (folder / CONFIG).is_file():
            cfg.model.kwargs = {**load_config(folder / CONFIG).model.kwargs, **cfg.model.kwargs}
    if vocab_path:
        vocab = Vocab.load(vocab_path)
        cfg.data.vocab = vocab_path
    else:
        vocab = build_vocab([r.tokens for r in ds.records] + read_descriptions(cfg.data.vocab_files), cfg.data.max_len)
    if cfg.model.kwargs.get("size") == "auto":
        cfg.model.kwargs = {**cfg.model.kwargs, "size": resolve_size("auto")}
    return vocab
