"""Masked-language-model pretraining of bert_small on every description (labels unused), resumable, AMP on GPU."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from meddx.atomic import save_torch, write_text
from meddx.config import PretrainConfig, RunConfig, as_config
from meddx.data.reports import read_descriptions
from meddx.data.sequences import MASK, N_SPECIAL, Vocab, build_vocab, length_grouped_sampler, trim_padding
from meddx.errors import ConfigError
from meddx.logs import quiet_third_party
from meddx.models.sequence import bert_config, resolve_size
from meddx.run import CHECKPOINTS, VOCAB
from meddx.training.fit import log_kept, refuse_unsafe

MLM_LR = 5e-4


def ngram_targets(real: torch.Tensor, prob: float, max_ngram: int, generator: torch.Generator | None = None):
    """Whole spans of 1..max_ngram real tokens, lengths drawn with probability proportional to 1/n (the n-gram masking
    of the Tianchi/NEZHA write-ups), started at a rate that masks about `prob` of the real tokens."""
    g = dict(generator=generator)
    weights = torch.tensor([1.0 / n for n in range(1, max_ngram + 1)])
    weights /= weights.sum()
    mean_length = float((weights * torch.arange(1, max_ngram + 1)).sum())
    starts = (torch.rand(real.shape, **g) < prob / mean_length) & real
    lengths = torch.multinomial(weights, real.numel(), replacement=True, **g).view(real.shape) + 1
    target = torch.zeros_like(real)
    for k in range(max_ngram):  # position i + k is masked when a span of more than k tokens starts at i
        covered = starts & (lengths > k)
        target[:, k:] |= covered[:, : real.shape[1] - k]
    return target & real


def mask_tokens(
    x: torch.Tensor,
    vocab_size: int,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
    masking: str = "token",
    max_ngram: int = 3,
):
    """BERT masking: `prob` of the real tokens are targets (single tokens, or whole n-gram spans with masking
    "ngram"); of the targets 80% -> [MASK], 10% random, 10% kept."""
    g = dict(generator=generator)
    real = x >= N_SPECIAL
    if masking == "ngram":
        target = ngram_targets(real, prob, max_ngram, generator)
    else:
        target = (torch.rand(x.shape, **g) < prob) & real
    labels = torch.where(target, x, torch.full_like(x, -100))
    roll = torch.rand(x.shape, **g)
    inputs = x.clone()
    inputs[target & (roll < 0.8)] = MASK
    swap = target & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = torch.randint(N_SPECIAL, vocab_size, x.shape, **g)[swap]
    return inputs, labels


class MaskedLM(pl.LightningModule):
    """transformers BertForMaskedLM built from a config, with the masking done per batch."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        size: str = "cpu",
        lr: float = 5e-4,
        mask_prob: float = 0.15,
        max_epochs: int = 30,
        masking: str = "token",
        max_ngram: int = 3,
    ):
        super().__init__()
        from transformers import BertForMaskedLM

        self.save_hyperparameters()
        self.mlm = BertForMaskedLM(bert_config(vocab_size, max_len, size))

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h = self.hparams
        inputs, labels = mask_tokens(x.cpu(), h.vocab_size, h.mask_prob, generator, h.masking, h.max_ngram)
        inputs, labels = inputs.to(x.device), labels.to(x.device)
        return self.mlm(input_ids=inputs, attention_mask=(x != 0).long(), labels=labels).loss

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch[0])
        self.log("train_mlm_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        g = torch.Generator().manual_seed(batch_idx)  # the same masks every epoch: comparable val losses
        self.log("val_mlm_loss", self.loss(batch[0], g), on_epoch=True, prog_bar=True, batch_size=len(batch[0]))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)
        total = max(
            int(self.trainer.estimated_stepping_batches), 1
        )  # recomputed on resume, so more epochs may be asked
        warmup = max(int(0.06 * total), 1)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup + 1)))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def encoder_state(self) -> dict:
        """The encoder's weights under the keys of bert_small's classifier (`bert.*`)."""
        return {f"bert.{k}": v.detach().cpu() for k, v in self.mlm.bert.state_dict().items()}


def _corpus(cfg: RunConfig, out: Path) -> tuple[Vocab, torch.Tensor]:
    """The vocabulary (the folder's own when resuming) and every description encoded with it."""
    seqs = read_descriptions([str(cfg.data.path), *cfg.data.vocab_files])
    vocab = Vocab.load(out / VOCAB) if (out / VOCAB).is_file() else build_vocab(seqs, cfg.data.max_len)
    vocab.save(out / VOCAB)
    return vocab, vocab.encode_all(seqs)


def _loaders(x: torch.Tensor, pc: PretrainConfig, seed: int) -> tuple[DataLoader, DataLoader, int]:
    """Train and val loaders over a seeded random val share of the sequences (length-grouped train batches if asked)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(pc.val_fraction * len(x)))
    val, train = x[order[:n_val]], x[order[n_val:]]
    sampler = length_grouped_sampler(train, pc.batch_size) if pc.group_by_length else None
    train_loader = DataLoader(
        TensorDataset(train),
        batch_size=pc.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=trim_padding,
        drop_last=len(train) > pc.batch_size,
    )
    val_loader = DataLoader(TensorDataset(val if n_val else train[:256]), batch_size=256, collate_fn=trim_padding)
    return train_loader, val_loader, n_val


def _trainer(cfg: RunConfig, out: Path, gpu: bool, precision: str) -> pl.Trainer:
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    checkpoint = ModelCheckpoint(dirpath=out / CHECKPOINTS, filename="best", monitor="val_mlm_loss", save_last=True)
    quiet_third_party()  # Lightning's tips and known warnings go to the log, not the terminal
    return pl.Trainer(
        max_epochs=cfg.pretrain.max_epochs,
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision=precision,
        callbacks=[checkpoint],
        logger=[TensorBoardLogger(str(out), name="tb", version=""), CSVLogger(str(out), name="logs", version="")],
        enable_progress_bar=cfg.train.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_train_batches=cfg.pretrain.limit_train_batches,
        default_root_dir=str(out),
    )


def _asked_size(cfg: RunConfig) -> str:
    """pretrain.size, or the fine-tuning size model.kwargs.size names (the encoder must fit it); both, if they agree."""
    model = cfg.model.kwargs.get("size", "auto")
    if "auto" not in (model, cfg.pretrain.size) and model != cfg.pretrain.size:
        raise ConfigError(f"pretrain.size {cfg.pretrain.size!r} and model.kwargs.size {model!r} differ: the encoder "
                          "is fine-tuned at its own size; give one")  # fmt: skip
    return cfg.pretrain.size if cfg.pretrain.size != "auto" else model


def pretrain(config: RunConfig | dict | str | Path) -> Path:
    """MLM on data.path + data.vocab_files (labels unused); writes encoder.pt, vocab.json, model_kwargs.json.

    Rerunning the same config resumes from checkpoints/last.ckpt; on a GPU it uses 16-bit AMP and the larger size.
    """
    cfg = as_config(config)
    pc, out = cfg.pretrain, Path(cfg.pretrain.dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.train.seed, verbose=False)
    vocab, x = _corpus(cfg, out)
    size = resolve_size(_asked_size(cfg))
    write_text(out / "model_kwargs.json", json.dumps({"size": size}))
    train_loader, val_loader, n_val = _loaders(x, pc, cfg.train.seed)
    module = MaskedLM(
        vocab.size, vocab.max_len, size, pc.lr or MLM_LR, pc.mask_prob, pc.max_epochs, pc.masking, pc.max_ngram
    )
    gpu = torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda")
    precision = pc.precision if pc.precision != "auto" else ("16-mixed" if gpu else "32-true")
    last, info_path = out / CHECKPOINTS / "last.ckpt", out / "pretrain.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    trainer = _trainer(cfg, out, gpu, precision)
    if not last.is_file():  # written now, so a resumed session still reports where the first one started
        info["initial_val_mlm_loss"] = val_mlm_loss(trainer, module, val_loader)
        write_text(info_path, json.dumps(info, indent=2))
    module.train()  # validate() leaves every layer in eval mode and fit() keeps it: dropout would stay off
    started = time.perf_counter()
    with refuse_unsafe(last if last.is_file() else None), log_kept(out):  # a resume keeps the epochs logged before
        trainer.fit(
            module, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None, weights_only=True
        )
    save_torch(module.encoder_state(), out / "encoder.pt")
    info.update(
        {
            "sequences": len(x),
            "val_sequences": n_val,
            "vocab_size": vocab.size,
            "max_len": vocab.max_len,
            "size": size,
            "masking": pc.masking if pc.masking == "token" else f"ngram (1-{pc.max_ngram})",
            "precision": precision,
            "epochs": trainer.current_epoch,
            "final_val_mlm_loss": val_mlm_loss(trainer, module, val_loader),
            "seconds_this_session": round(time.perf_counter() - started, 1),
            "device": "gpu" if gpu else "cpu",
        }
    )
    write_text(info_path, json.dumps(info, indent=2))
    return out


def val_mlm_loss(trainer: pl.Trainer, module: MaskedLM, loader: DataLoader) -> float:
    """The MLM loss over the val sequences (the same masks every time), through Lightning's validation loop."""
    return float(trainer.validate(module, loader, verbose=False)[0]["val_mlm_loss"])
