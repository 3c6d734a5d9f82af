"""An exponential moving average of the weights (Lightning's EMAWeightAveraging): validation, checkpoints and the saved
model.pt hold the averaged weights; the raw ones live on in the checkpoints only to resume training."""

from __future__ import annotations

import warnings

from pytorch_lightning.callbacks import EMAWeightAveraging


class EMAWeights(EMAWeightAveraging):
    """EMA over every optimiser step (`decay`); a best checkpoint loaded for the predictions after fit keeps the
    averaged weights (Lightning's callback would put the raw ones back)."""

    def __init__(self, decay: float):
        super().__init__(decay=decay, use_buffers=True)

    def setup(self, trainer, pl_module, stage: str) -> None:
        with warnings.catch_warnings():  # configure_model only sets memory layout and compiles: nothing is sharded
            warnings.filterwarnings("ignore", message=".*overrides the configure_model.*")
            super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
