"""Self-configured training: read the data once, plan what the user did not set, decode at the planned size, time a
pilot, fit epochs and ensemble size to the budget, then train every member on the same decoded data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from meddx.config import RunConfig
from meddx.run import MEMBERS, Run
from meddx.training.datamodule import RunDataModule
from meddx.training.fit import fit
from meddx.training.pilot import time_epoch
from meddx.training.plan import Plan, fit_budget, make_plan
from meddx.training.writer import is_rank_zero, new_run_dir

PLAN_ENV = "MEDDX_PLAN"  # rank 0's plan, inherited by the processes Lightning launches (they must not plan again)


def plan_run(cfg: RunConfig) -> tuple[RunConfig, RunDataModule, Plan | None]:
    """The planned config, its data module (set up) and the plan (None when planning is off)."""
    started = time.perf_counter()
    data = RunDataModule(cfg)
    ds = data.read()
    if not cfg.plan.enabled:
        data.setup()
        return cfg, data, None
    inherited = None if is_rank_zero() else os.environ.get(PLAN_ENV)  # rank 0 (and every notebook call) plans
    plan = Plan.from_dict(json.loads(inherited)) if inherited else make_plan(cfg, ds)
    data.cfg = plan.apply(cfg)
    data.setup()
    if not inherited:
        distributed = data.cfg.train.devices * data.cfg.train.num_nodes > 1
        if cfg.plan.pilot and data.cfg.train.num_nodes == 1:  # nodes launched apart could time differently
            plan.pilot = time_epoch(data.cfg, data)
        plan.pilot["data_seconds"] = round(time.perf_counter() - started, 1)
        fit_budget(plan, cfg, plan.pilot.get("steps_per_epoch", 1), time.perf_counter() - started, distributed)
        os.environ[PLAN_ENV] = json.dumps(plan.to_dict(), default=str)
    data.cfg = plan.apply(data.cfg)  # on the data module's config: it holds the resolved vocabulary
    return data.cfg, data, plan


def train_members(cfg: RunConfig) -> tuple[list[Run], Path | None, RunConfig] | None:
    """Every model of the (planned) run: one run folder, or `train.ensemble` members under <run>/members/seed<k>,
    all on the same split and decoded data; then the ensemble's folder (None for one model) and the planned config.
    None in the worker processes of a distributed run."""
    planned, data, plan = plan_run(cfg)
    k = planned.train.ensemble
    if k == 1:
        run = fit(planned, data, plan)
        return ([run], None, planned) if run is not None else None
    base = new_run_dir(planned)
    members = []
    for i in range(k):
        member = planned.model_copy(deep=True)
        member.name, member.output_dir = f"seed{planned.train.seed + i}", str(base / MEMBERS)
        member.train.seed, member.train.ensemble = planned.train.seed + i, 1
        members.append(fit(member, data, plan))
    return members, base, planned
