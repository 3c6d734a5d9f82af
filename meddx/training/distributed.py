"""Which process this is under any launcher Lightning knows (its own, torchrun, SLURM, LSF, MPI), and rank 0's choices
(the run folder, the plan) shared with the other processes through the process group."""

from __future__ import annotations

import atexit
import os
from datetime import timedelta

import torch
from lightning_fabric.plugins.environments import (
    ClusterEnvironment,
    LightningEnvironment,
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)

from meddx.config import RunConfig
from meddx.errors import ConfigError

GROUP_TIMEOUT = timedelta(hours=2)  # the other processes wait this long for rank 0's plan (pilot, learning-rate finder)


def cluster_environment() -> ClusterEnvironment:
    """The launcher's environment, detected in the order Lightning's Trainer uses."""
    for kind in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if kind.detect():
            return kind()
    return LightningEnvironment()


def launched_externally() -> bool:
    """True when a launcher (torchrun, srun, jsrun, mpirun) started every process of a multi-process job at once."""
    env = cluster_environment()
    return env.creates_processes_externally and env.world_size() > 1


def is_rank_zero() -> bool:
    """True in the process that writes files (always, outside distributed runs): global rank 0 as the launcher
    numbers it, or, under Lightning's own launcher (whose workers re-run the command), local and node rank 0."""
    if launched_externally():
        return cluster_environment().global_rank() == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def match_launcher(cfg: RunConfig) -> RunConfig:
    """`train.devices` and `train.num_nodes` as the external launcher started the processes (a value the user gave
    that disagrees is one line); the config unchanged under Lightning's own launcher."""
    if not launched_externally():
        return cfg
    env = cluster_environment()
    world = env.world_size()
    if isinstance(env, SLURMEnvironment):
        nodes = int(os.environ.get("SLURM_NNODES", 1))
    else:
        nodes = world // int(os.environ.get("LOCAL_WORLD_SIZE", world))
    devices = world // max(nodes, 1)
    t = cfg.train
    asked = (t.devices, t.num_nodes)
    if asked != (1, 1) and asked != (devices, nodes):
        raise ConfigError(
            f"train.devices={t.devices}, train.num_nodes={t.num_nodes}: the launcher started {devices} process(es) "
            f"on each of {nodes} node(s); leave both unset or give those values"
        )
    if asked == (devices, nodes):
        return cfg
    out = cfg.model_copy(deep=True)
    out.train.devices, out.train.num_nodes = devices, nodes
    return out


def alone() -> list:
    """Trainer plugins for a one-process fit inside a multi-process job (rank 0's pilot and learning-rate finder):
    the launcher's environment would otherwise ask for every process."""
    return [LightningEnvironment()]


def start_process_group(cfg: RunConfig) -> None:
    """Join the launcher's process group before training (Lightning's strategy then reuses it), so rank 0 can share
    the run folder and the plan; nothing under Lightning's own launcher, whose workers start inside `fit`."""
    if not launched_externally() or not torch.distributed.is_available() or torch.distributed.is_initialized():
        return
    env = cluster_environment()
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.main_address, str(env.main_port)
    on_gpu = cfg.train.accelerator in ("gpu", "cuda") or (cfg.train.accelerator == "auto" and torch.cuda.is_available())
    torch.distributed.init_process_group(
        "cpu:gloo,cuda:nccl" if on_gpu else "gloo",
        rank=env.global_rank(),
        world_size=env.world_size(),
        timeout=GROUP_TIMEOUT,
    )
    atexit.register(_leave_group)


def _leave_group() -> None:
    """Close the group before the interpreter ends: a process that leaves with it open can abort as its threads are
    torn down ('terminate called without an active exception'), failing the whole launch."""
    if grouped():
        torch.distributed.destroy_process_group()


def grouped() -> bool:
    """Whether this process is in a process group (from the start under torchrun/SLURM, after the first fit under
    Lightning's own launcher)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def share(value):
    """Rank 0's `value` in every process of the group (unchanged outside one); every process must call it."""
    if not grouped():
        return value
    box = [value if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
