"""GPU figures (issue 16), for a session that the device tool lends a GPU; no test needs one.

ResNet-50 at 224 px, a training step (forward, backward, AdamW) on synthetic batches already on the GPU, so the
figure is the model's and not the loader's:
- the peer: PyTorch's defaults (fp32, NCHW), the step any hand-written loop takes;
- meddx's GPU defaults, as the plan sets them on CUDA: bf16 autocast and channels_last (`training/hardware.py`);
- the same with `torch.compile` (`train.compile`, off by default) unless --no-compile.
Each repeat runs the sides in a random order. Images/s is the median over repeats; the model FLOPs utilisation is the
FLOPs of one step (counted by `torch.utils.flop_counter`) times steps/s over the GPU's dense bf16 peak (goal >= 40%).

    python3 bench/gpu.py [--batch 256] [--steps 30] [--repeats 3] [--no-compile] [--peak-tflops 989]
    python3 bench/gpu.py --cpu-smoke      # the script's own plumbing on the CPU: tiny sizes, docs left alone
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402

PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}
SIDES = {
    "fp32, NCHW (PyTorch defaults, the peer)": {"bf16": False, "channels_last": False, "compile": False},
    "bf16 + channels_last (meddx's CUDA plan)": {"bf16": True, "channels_last": True, "compile": False},
    "bf16 + channels_last + torch.compile": {"bf16": True, "channels_last": True, "compile": True},
}


def peak_tflops(name: str, given: float | None) -> float | None:
    """The dense bf16 peak of this GPU from its name (the most specific entry first), or the user's figure."""
    return given or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def make_model(channels_last: bool, compile_: bool, device: str, arch: str) -> nn.Module:
    import timm  # meddx's registry builds timm models the same way (`models/registry.py`)

    model = timm.create_model(arch, pretrained=False, num_classes=1, in_chans=3).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile_ else model


def step_fn(model: nn.Module, bf16: bool, device: str):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device == "cuda")
    loss_fn = nn.BCEWithLogitsLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_side(side: dict, args: argparse.Namespace, device: str) -> float:
    """Seconds per training step after warm-up (compilation included in the warm-up, not in the figure)."""
    torch.manual_seed(0)
    model = make_model(side["channels_last"], side["compile"], device, args.arch)
    step = step_fn(model, side["bf16"], device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if side["channels_last"] else x
    y = torch.randint(0, 2, (args.batch, 1), device=device).float()
    for _ in range(args.warmup):
        step(x, y)
    sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)
    sync(device)
    return (time.perf_counter() - started) / args.steps


def step_flops(args: argparse.Namespace, device: str) -> int:
    """FLOPs of one training step (forward and backward), counted once in fp32 (the count is the same in bf16)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(False, False, device, args.arch)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops()


def measure(args: argparse.Namespace, device: str) -> dict[str, list[float]]:
    sides = [s for s in SIDES if args.compile or not SIDES[s]["compile"]]
    times: dict[str, list[float]] = {s: [] for s in sides}
    order = random.Random(0)
    for r in range(args.repeats):
        order.shuffle(sides)
        for s in sides:
            times[s].append(time_side(SIDES[s], args, device))
            print(f"repeat {r}: {s}: {args.batch / times[s][-1]:.1f} images/s", flush=True)
    return times


def render(args: argparse.Namespace, device: str, times: dict[str, list[float]], flops: int) -> str:
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke test)"
    peak = peak_tflops(name, args.peak_tflops)
    peer = statistics.median(times[next(iter(SIDES))])
    rows = []
    for s, t in times.items():
        med, lo, hi = statistics.median(t), min(t), max(t)
        mfu = f"{100 * flops / med / (peak * 1e12):.1f}%" if peak else "peak unknown"
        rows.append(
            f"| {s} | {args.batch / med:.0f} ({args.batch / hi:.0f}-{args.batch / lo:.0f}) | {peer / med:.2f}x | {mfu} |"
        )
    cmd = f"python3 bench/gpu.py --batch {args.batch} --steps {args.steps} --repeats {args.repeats}" + (
        "" if args.compile else " --no-compile"
    )
    return "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {name}, torch {torch.__version__}, by `{cmd}`. {args.arch} at "
            f"{args.size} px, batch {args.batch}, a training step (forward, backward, fused AdamW) on synthetic batches "
            f"already on the GPU; {args.warmup} warm-up steps, {args.steps} timed, {args.repeats} repeats in a random "
            f"order: median (min-max). One step is {flops / 1e9:.0f} GFLOPs (torch.utils.flop_counter); peak: dense "
            f"bf16 {peak or '?'} TFLOP/s.",
            "",
            "| step | images/s | against the peer | model FLOPs utilisation |",
            "|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak when its name is not in the table")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks the script, not the GPU")
    args = ap.parse_args()
    if args.cpu_smoke:
        device, args.arch, args.size, args.batch, args.warmup, args.steps, args.repeats = (
            "cpu",
            "resnet18",
            32,
            4,
            1,
            2,
            1,
        )
    elif not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device here (run it where the device tool lends a GPU, or --cpu-smoke)")
    else:
        device = "cuda"
        torch.backends.cudnn.benchmark = True  # meddx's Trainer sets it on CUDA (`training/trainer.py`)
    flops = step_flops(args, device)
    body = render(args, device, measure(args, device), flops)
    print(body)
    if not args.cpu_smoke:
        print(f"wrote {write_section('gpu', 'GPU: a ResNet-50 training step, bf16 against fp32', body)}")


if __name__ == "__main__":
    main()
