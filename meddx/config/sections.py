"""The sections of a run's configuration as pydantic models; `RunConfig` holds them all."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from meddx.config.base import Section as _Section
from meddx.config.pretrain import PretrainConfig
from meddx.config.tricks import PseudoLabelConfig, TricksConfig


class DataConfig(_Section):
    """Where the data is and how to read one sample into a (C, H, W) array."""

    path: str | dict[str, str] = Field(
        "pneumoniamnist",
        description="CSV, folder, .npz, or 'pneumoniamnist' (bundled); a {split: csv} mapping keeps official splits.",
    )
    format: Literal["auto", "csv", "folder", "medmnist", "tianchi"] = "auto"
    root: str | None = Field(None, description="Folder that image paths in a CSV are relative to.")
    allow_outside_root: bool = Field(
        False, description="Let a CSV name images outside its folder (absolute paths, '..'); refused by default."
    )
    image_column: str | None = Field(None, description="Image path column; default: Image, path, filename, ...")
    patient_column: str | None = None
    label_columns: list[str] | None = Field(None, description="0/1 label columns (multi-label); default: all others.")
    label_column: str | None = Field(None, description="One column of class names (binary / multi-class).")
    patient_regex: str | None = Field(
        None, description="Regex on the file name; group 1 (or the match) is the patient."
    )
    guess_patients: bool = Field(
        True,
        description="No patient column nor regex: take patients from file names of the form <patient>_<number>.ext "
        "when they group the images (the notes and the plan say so); false: each image is its own patient.",
    )
    positive_class: str | None = Field(
        None,
        description="Positive class of a two-class set; default: the one not named like a negative (normal, healthy, "
        "benign, control...), else the last in sorted order.",
    )
    label_names: list[str] | None = Field(None, description="Names for MedMNIST label indices.")
    classes: list[str] | None = Field(
        None, description="Every class of the task (`evaluate --data` sets the run's): data holding some reads."
    )
    skip_unreadable: bool = Field(
        False, description="Leave out images that cannot be decoded (named in the notes) instead of stopping."
    )
    views: list[int] | None = Field(None, description="Slices/projections of a stack to use as channels.")
    view_axis: int = 0
    channels: int | None = Field(None, description="Input channels; default: those of the first image.")
    image_size: int | None = Field(None, description="Resize to a square of this size; default: first image's size.")
    uncertain_labels: Literal["ignore", "ones", "zeros"] = Field(
        "ignore", description="CSV label -1 (uncertain, CheXpert): unknown (left out), or read as 1 or as 0."
    )
    normalize: Literal["dataset", "sample", "none"] = "dataset"
    cache: bool = Field(
        True,
        description="Keep decoded images on disk ($MEDDX_CACHE_DIR, default ~/.cache/meddx/decoded), memory-mapped "
        "and reused by later runs, folds and processes.",
    )
    dicom_window: tuple[float, float] | None = Field(None, description="(center, width); default: the file's own.")
    label_set: Literal["both", "regions", "types"] = Field(
        "both", description="Tianchi round 2: 29 labels (17 regions + 12 types), regions only or types only."
    )
    vocab_files: list[str] = Field(
        default_factory=list,
        description="Unlabelled `|,|` files (test sets) added to the vocabulary and the MLM corpus.",
    )
    max_len: int | None = Field(
        None,
        ge=1,
        description="Pad/truncate token sequences to this length; default: the longest in train + vocab_files.",
    )
    vocab: str | None = Field(
        None, description="A vocab.json to use (e.g. from `meddx pretrain`); default: built from the data."
    )

    @property
    def main_path(self) -> str:
        """The data path, or the first file of a {split: file} mapping (names a run, a plan, a corpus)."""
        return self.path if isinstance(self.path, str) else next(iter(self.path.values()))


class SplitConfig(_Section):
    """Patient-level, label-stratified train/val/test split."""

    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    near_duplicates: bool = Field(
        True, description="Also look for re-encoded or resized copies across splits (perceptual hash + correlation)."
    )
    use_official: bool = True
    min_val_class: int = Field(
        10,
        ge=0,
        description="An official val split (binary or multi-class) with fewer images of its rarest class is merged "
        "into train and val is carved by patient (Kermany's 16-image val); 0 keeps any official val.",
    )
    on_duplicate_images: Literal["error", "warn", "drop_from_train"] = Field(
        "drop_from_train",
        description="Identical or near-identical images on two sides: drop the train copies (for a val-test pair, the "
        "val copy: test stays whole; the report names them), stop (error), or keep them (warn).",
    )
    folds: int | None = Field(
        None, ge=2, description="k-fold: fold `fold` is the test split, val is carved from the rest."
    )
    fold: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fold_in_range(self) -> SplitConfig:
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"split.fold {self.fold} must be below split.folds {self.folds}")
        return self

    @field_validator("ratios")
    @classmethod
    def _ratios_sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError(f"split ratios must be >= 0, train > 0, and sum to 1; got {v}")
        return v


class ModelConfig(_Section):
    """Which registered model, and an optional local weights file (never downloaded)."""

    name: str = "small_cnn"
    weights: str | None = None
    dropout: float = 0.2
    tta: bool = Field(
        False,
        description="Average predictions over the image and four copies shifted by 3% of its side (the plan decides "
        "it on val).",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra builder arguments, e.g. {size: gpu} for bert_small."
    )
    embeddings: str | None = Field(
        None, description="Token models: word vectors from `meddx pretrain` (objective word2vec), its encoder.pt."
    )
    freeze_embeddings: bool = Field(False, description="Keep the loaded word vectors fixed while training.")
    dropout_samples: int = Field(
        1, ge=1, description="Token models: multi-sample dropout, the head averaged over this many dropout masks."
    )


class AugmentConfig(_Section):
    """Medically safe augmentation: small shifts, rotations, brightness/contrast; no flip unless asked."""

    enabled: bool = True
    rotate_degrees: float = 10.0
    translate: float = 0.06
    scale: float = 0.08
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False


class TrainConfig(_Section):
    """Optimisation and the Lightning trainer."""

    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1, description="Early stopping on validation loss (epochs without improvement).")
    class_weights: Literal["auto", "on", "off"] = "auto"
    augment: AugmentConfig = AugmentConfig()
    seed: int = 0
    accelerator: str = "auto"
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = Field(False, description="Page-locked batches for faster copies to a GPU.")
    precision: str = Field("32-true", description="Lightning's precision: 32-true, bf16-mixed, 16-mixed.")
    channels_last: bool = Field(False, description="Image models: NHWC memory layout (faster convolutions on GPUs).")
    compile: bool = Field(False, description="torch.compile the model (slow first steps; faster later on GPUs).")
    progress_bar: bool = True
    checkpoint_minutes: float | None = Field(
        None, gt=0, description="Also write checkpoints/last.ckpt within an epoch at most this many minutes apart."
    )
    limit_train_batches: float | int | None = None
    max_minutes: float | None = Field(
        None, gt=0, description="Stop training after this many minutes (Lightning's max_time); the best epoch is kept."
    )
    token_dropout: float = Field(0.0, ge=0, lt=1, description="Sequences: share of tokens replaced by unk in training.")
    group_by_length: bool = Field(
        False,
        description="Sequences: batches of similar lengths (transformers' "
        "LengthGroupedSampler): faster, but lengths go with labels, so batches are less mixed "
        "(Tianchi bilstm, fold 0: 0.0472 vs 0.0437 mlogloss).",
    )
    init_from: str | None = Field(
        None, description="Run folder or local state-dict file to start from; its head is skipped."
    )
    finetune_depth: int | Literal["all"] = Field(
        "all", description="Trainable backbone blocks (0: head only; see `meddx model-info`)."
    )
    backbone_lr_mult: float = Field(
        1.0, gt=0, le=1, description="Learning rate of the backbone relative to train.lr (the head's)."
    )
    unfreeze_every: int = Field(
        0, ge=0, description="Gradual unfreezing: one more block every this many epochs (0: off)."
    )
    mixup: float = Field(0.0, ge=0, description="Mixup Beta(alpha, alpha) on inputs and labels (0: off).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing for BCE (y*(1-e)+e/2) and CE.")
    swa: bool = Field(
        False, description="Stochastic Weight Averaging (Lightning's callback); model.pt holds the SWA weights."
    )
    swa_lr: float | None = Field(None, gt=0, description="SWA learning rate; default: train.lr / 10.")
    swa_epoch_start: float = Field(
        0.75, gt=0, le=1, description="Fraction of max_epochs after which weights are averaged."
    )
    diagnostics: bool = Field(
        True, description="TensorBoard histograms of val probabilities and the ROC figure each epoch."
    )
    ensemble: int = Field(1, ge=1, description="Models trained with seeds seed, seed+1, ... on one split, averaged.")
    tricks: TricksConfig = TricksConfig()
    pseudo_labels: PseudoLabelConfig = PseudoLabelConfig()

    @field_validator("class_weights", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:
        """YAML 1.1 reads `off`/`on` (in a file or `--set`) as booleans: take them back as the words meant."""
        return {False: "off", True: "on"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("finetune_depth")
    @classmethod
    def _depth(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("finetune_depth must be an integer >= 0 or 'all'")
        return v


class EvaluateConfig(_Section):
    """How the report is computed: operating point chosen on val, bootstrap intervals, calibration."""

    operating_point: str = Field(
        "youden", description="youden | fixed=T | sensitivity=S | specificity=S, chosen on val."
    )
    bootstrap: int = Field(2000, ge=0, description="Resamples (of patients) for the 95% intervals; 0 turns them off.")
    ci: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    temperature_scaling: bool = Field(False, description="Fit one temperature on val and apply it to test.")
    calibration_bins: int = Field(10, ge=2)
    on_training_overlap: Literal["error", "drop"] = Field(
        "drop",
        description="New data holding copies of the run's train/val images: leave them out, said in the warnings "
        "(drop), or stop (error).",
    )

    @field_validator("operating_point")
    @classmethod
    def _known_operating_point(cls, v: str) -> str:
        method, _, value = v.partition("=")
        if method.strip().lower() not in ("youden", "fixed", "sensitivity", "specificity"):
            raise ValueError("operating_point must be youden, fixed=T, sensitivity=S or specificity=S")
        if value:
            try:
                if not 0 <= float(value) <= 1:
                    raise ValueError
            except ValueError:
                raise ValueError(f"operating_point value {value!r} must be a number in [0, 1]") from None
        return v


class PlanConfig(_Section):
    """Self-configuration: every recipe field the user did not set is planned from the data's fingerprint and a time
    budget (`meddx plan` shows the plan; plan.json in the run folder records it)."""

    enabled: bool = Field(True, description="Plan the fields the user did not set; false: the fixed defaults.")
    budget_minutes: float = Field(15.0, gt=0, description="Wall time for training every model of the plan.")
    pilot: bool = Field(True, description="Time a short pilot here to fit epochs and ensemble size to the budget.")
    max_ensemble: int = Field(5, ge=1, description="Most models (seeds) the plan averages.")
    select: bool = Field(
        True, description="Try the plan's alternatives (model, size) on val when the budget allows; false: the rules'."
    )


class RunConfig(_Section):
    """The whole run: data, split, model, train; saved as config.yaml in the run folder."""

    name: str | None = None
    output_dir: str = "runs"
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    pretrain: PretrainConfig = PretrainConfig()
    plan: PlanConfig = PlanConfig()

    @model_validator(mode="after")
    def _one_label_source(self) -> RunConfig:
        if self.data.label_columns and self.data.label_column:
            raise ValueError("give data.label_columns (0/1 columns) or data.label_column (class names), not both")
        return self
