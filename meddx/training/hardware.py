"""The plan's hardware rules: precision, memory layout, pinned memory and loader workers for the machine it runs on."""

from __future__ import annotations

import torch

from meddx.data.tensors import PRELOAD_LIMIT_BYTES
from meddx.machine import usable_cores

MAX_WORKERS = 8


def hardware_rules(p, gpu: bool, fp: dict) -> None:
    """On CUDA: bf16 mixed precision (fp16 with Lightning's loss scaling where the GPU has no bf16), channels_last
    for image models and pinned memory. Everywhere: loader workers only when images are decoded batch by batch."""
    image = fp["kind"] != "sequence"
    if gpu:
        bf16 = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
        p.choose(
            "train.precision",
            "bf16-mixed" if bf16 else "16-mixed",
            "CUDA: mixed precision, "
            + ("bf16 (fp32's range, no loss scaling)" if bf16 else "fp16 with loss scaling (this GPU has no bf16)"),
        )
        if image:
            p.choose("train.channels_last", True, "CUDA: convolutions run fastest in NHWC under mixed precision")
        p.choose("train.pin_memory", True, "CUDA: page-locked batches copy to the GPU while it computes")
    if not image:
        return
    size = p.plan.value("data.image_size") or 0
    channels = p.plan.value("data.channels") or (3 if fp["images"]["layout"] in ("hwc", "dhw") else 1)
    decoded = fp["samples"] * channels * size * size * 4
    if decoded <= PRELOAD_LIMIT_BYTES:
        p.choose(
            "train.num_workers", 0, f"{decoded / 1e9:.2f} GB decoded once into memory: nothing to decode per batch"
        )
        return
    workers = max(1, min(usable_cores() - 1, MAX_WORKERS))
    p.choose(
        "train.num_workers",
        workers,
        f"{decoded / 1e9:.1f} GB decoded is over the in-memory limit ({PRELOAD_LIMIT_BYTES / 1e9:.1f} GB): "
        f"{workers} worker process(es) decode batches beside training ({usable_cores()} cores)",
    )
