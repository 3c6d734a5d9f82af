"""Self-configured training: read the data once, plan what the user did not set, decode at the planned size, time a
pilot, fit epochs and ensemble size to the budget, then train every member on the same decoded data."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from meddx.config import RunConfig, load_config, save_config
from meddx.errors import ConfigError
from meddx.models import create_model
from meddx.models.finetune import check_depth, loads_weights, parse_depth
from meddx.run import CONFIG, MEMBERS, PLAN, Run
from meddx.training.datamodule import RunDataModule
from meddx.training.distributed import grouped, is_rank_zero, match_launcher, share, start_process_group
from meddx.training.fit import fit
from meddx.training.lr_find import STEPS as LR_FINDER_STEPS
from meddx.training.lr_find import find_lr
from meddx.training.pilot import choose_layout, time_epoch
from meddx.training.plan import Plan, Planner, fit_budget, make_plan, reserve_seconds
from meddx.training.search import Chooser, candidates_in_budget, search, should_search, top_up
from meddx.training.trainer import check_accelerator
from meddx.training.writer import new_run_dir, open_ensemble, staged_ensemble

PLAN_ENV = "MEDDX_PLAN"  # rank 0's plan, inherited by the processes Lightning launches (they must not plan again)


def plan_run(cfg: RunConfig) -> tuple[RunConfig, RunDataModule, Plan | None]:
    """The planned config, its data module (set up) and the plan (None when planning is off). Rank 0 plans; the
    other processes get its plan (through the process group, or Lightning's launcher's environment)."""
    started = time.perf_counter()
    cfg = match_launcher(cfg)
    check_accelerator(cfg)
    check_depth(None, cfg.train.finetune_depth, cfg.model.name, loads_weights(cfg))  # before any folder is made
    start_process_group(cfg)
    data = RunDataModule(cfg)
    ds = data.read()
    if not cfg.plan.enabled:
        data.setup()
        _check_frozen(cfg, data)
        return cfg, data, None
    leader = is_rank_zero()
    inherited = None if leader else os.environ.get(PLAN_ENV)  # Lightning's launcher: its workers re-run the command
    if inherited:
        plan = Plan.from_dict(json.loads(inherited))
    else:  # rank 0's first plan reaches the others before decoding, so every process decodes at once
        plan = _from_rank_zero(make_plan(cfg, ds) if leader else None) or make_plan(cfg, ds)
        leader = leader or not grouped()  # a node started apart, with nothing to inherit, plans alone
    data.cfg = plan.apply(cfg)
    data.setup()
    _check_frozen(data.cfg, data)  # the planned model: its blocks, before a search or an ensemble makes a folder
    if leader:
        distributed = data.cfg.train.devices * data.cfg.train.num_nodes > 1
        if cfg.plan.pilot and data.cfg.train.num_nodes == 1:  # nodes launched apart could time differently
            plan.pilot = choose_layout(cfg, data, plan, time_epoch(data.cfg, data))
            data.cfg = plan.apply(data.cfg)
        if plan.lr_finder.get("wanted"):  # after the pilot, which says what the finder's batches cost
            data.cfg = _found_lr(cfg, data, plan)
        plan.pilot["data_seconds"] = round(time.perf_counter() - started, 1)
        fit_budget(plan, cfg, plan.pilot.get("steps_per_epoch", 1), time.perf_counter() - started, distributed)
        os.environ[PLAN_ENV] = json.dumps(plan.to_dict(), default=str)
    if not inherited:
        plan = _from_rank_zero(plan)  # with the learning rate, the pilot and the epochs
    data.cfg = plan.apply(data.cfg)  # on the data module's config: it holds the resolved vocabulary
    return data.cfg, data, plan


def _check_frozen(cfg: RunConfig, data: RunDataModule) -> None:
    """`check_depth` on the model `cfg` names, built bare (nothing loaded) from the set-up data's input."""
    if parse_depth(cfg.train.finetune_depth) is None:
        return
    kwargs = {**data.model_kwargs, **cfg.model.kwargs}
    bare = create_model(cfg.model.name, data.in_chans, len(data.dataset.label_names), **kwargs)
    check_depth(bare, cfg.train.finetune_depth, cfg.model.name, loads_weights(cfg))


def _from_rank_zero(plan: Plan | None) -> Plan | None:
    """Rank 0's plan in every process of a process group (the argument unchanged outside one, or in rank 0)."""
    shared = share(None if plan is None else json.dumps(plan.to_dict(), default=str))
    return plan if is_rank_zero() or shared is None else Plan.from_dict(json.loads(shared))


LR_FINDER_SHARE = 0.15  # of the budget, the most the learning-rate finder's batches may take


def _found_lr(cfg: RunConfig, data: RunDataModule, plan: Plan) -> RunConfig:
    """The planned config with the learning-rate finder's rate (kept at the plan's start value when it finds none, or
    when its batches, timed by the pilot, would take more than LR_FINDER_SHARE of the budget)."""
    cost = LR_FINDER_STEPS * plan.pilot.get("seconds_per_train_batch", 0.0)
    if cost > LR_FINDER_SHARE * plan.budget_minutes * 60:
        plan.lr_finder["skipped"] = (
            f"its {LR_FINDER_STEPS} batches would take {cost / 60:.1f} of the {plan.budget_minutes:g}-minute budget "
            f"(over {LR_FINDER_SHARE:.0%})"
        )
        start = plan.value("train.lr")
        why = f"no rule for {data.cfg.model.name}; the learning-rate finder skipped: {plan.lr_finder['skipped']}"
        Planner(cfg, plan).choose("train.lr", start, f"{why}; {start:g}")
        return data.cfg
    found = find_lr(data.cfg, data, LR_FINDER_STEPS)
    plan.lr_finder.update(found)
    if found["lr"] is not None:
        why = f"Lightning's learning-rate finder over {found['steps']} batches (suggested {found['suggested']:.2g})"
        Planner(cfg, plan).choose("train.lr", found["lr"], why, "lr finder")
    return plan.apply(data.cfg)


def train_members(cfg: RunConfig, choose: Chooser | None = None) -> tuple | None:
    """Every model of the (planned) run: one run folder, or `train.ensemble` members under <run>/members/, all on the
    same split and decoded data; with `choose` (a comparison on val), the plan's alternatives are tried first and the
    winner's seeds make the ensemble. Returns (runs, ensemble folder or None, planned config, plan or None); None in
    the worker processes of a distributed run."""
    started = time.monotonic()
    planned, data, plan = plan_run(cfg)
    distributed = planned.train.devices * planned.train.num_nodes > 1
    go, why = should_search(cfg, plan, distributed) if choose else (False, "no chooser")
    if plan is not None and plan.alternatives and not go:
        plan.selection = {"chosen": None, "reason": why}
    if go:
        deadline = started + plan.budget_minutes * 60 - reserve_seconds(plan.budget_minutes * 60)
        tried = candidates_in_budget(planned, data, plan, deadline)
        if len(tried) > 1:
            return (*search(cfg, tried, plan, choose, deadline), plan)
    k = planned.train.ensemble
    deadline = started + (plan.budget_minutes * 60 - reserve_seconds(plan.budget_minutes * 60) if plan else 0)
    may_add = plan is not None and bool(plan.pilot.get("seconds_per_epoch")) and _planned_size(cfg, plan, distributed)
    capped = may_add and not distributed and cfg.train.max_minutes is None  # the budget is real on a busy machine
    if k == 1:
        grace = reserve_seconds(plan.budget_minutes * 60) / 2 if capped else 0.0
        run = fit(_until(planned.model_copy(deep=True), deadline + grace, plan) if capped else planned, data, plan)
        if run is None or not (may_add and cfg.plan.max_ensemble > 1 and _fits_again([run], deadline)):
            return ([run], None, planned, plan) if run is not None else None
        why = "1 planned at full epochs; early stopping left time for a second seed"
        Planner(cfg, plan).choose("train.ensemble", 2, why, "budget")  # planned from here on: a kill resumes both
        planned = plan.apply(planned)
        base, members = run.path, [_first_member(run, planned, plan)]
        members.append(fit(_until(seed_config(planned, base, 1), deadline), data, plan))
    else:
        base = new_run_dir(planned)
        if is_rank_zero():
            open_ensemble(base, planned, plan, "ensemble")
        members = _planned_members(planned, base, data, plan, deadline if capped else None)
        if not is_rank_zero():
            return None  # a worker process of a distributed run: rank 0 averages the members
        if len(members) < k:
            planned = _fewer_members(cfg, plan, planned, base, members)
    if may_add:
        more = lambda i: fit(_until(seed_config(planned, base, i), deadline), data, plan)  # noqa: E731
        members = top_up(members, deadline, cfg.plan.max_ensemble, more, 0.0)
        if len(members) > k:
            why = f"{k} planned at full epochs; early stopping left time for {len(members) - k} more seed(s)"
            Planner(cfg, plan).choose("train.ensemble", len(members), why, "budget")
            planned = plan.apply(planned)
    return members, base, planned, plan


def _fewer_members(cfg: RunConfig, plan: Plan, planned: RunConfig, base: Path, members: list[Run]) -> RunConfig:
    """The plan (and the folder's config and plan.json, so a kill resumes these) says the ensemble holds the
    `members` trained, not the number planned, and why; returns the planned config."""
    n, slowest = len(members), max(m.training.get("seconds") or 0 for m in members)
    k, per_member = planned.train.ensemble, plan.estimate.get("training_s", 0) / planned.train.ensemble / 60
    why = (
        f"{k} planned at {per_member:.1f} min each; the slowest took {slowest / 60:.1f} min here, so {n} fit the budget"
    )
    Planner(cfg, plan).choose("train.ensemble", n, why, "budget")
    planned = plan.apply(planned)
    save_config(planned, base / CONFIG)
    plan.save(base / PLAN)
    return planned


def _planned_members(planned: RunConfig, base: Path, data: RunDataModule, plan: Plan, deadline: float | None) -> list:
    """The planned seeds; with a `deadline` (time.monotonic), none runs past it and half the reserve (nor stops before
    the minutes planned for it), and a seed from the third on is not begun when, as slow as the slowest so far, it
    would end past them (a machine busier than at the pilot, or seeds slower than the pilot's epochs): fewer, whole
    models. `meddx train --resume` finishes the seeds the folder's config names."""
    grace = reserve_seconds(plan.budget_minutes * 60) / 2 if plan else 0.0
    members: list[Run] = []
    for i in range(planned.train.ensemble):
        if deadline is not None and len(members) >= 2 and not _fits_again(members, deadline + grace):
            break  # a seed begun now would be cut short by the budget: fewer, whole models (an ensemble needs 2)
        member = seed_config(planned, base, i)
        members.append(fit(_until(member, deadline + grace, plan) if deadline is not None else member, data, plan))
    return members


def _fits_again(runs: list[Run], deadline: float) -> bool:
    """Whether another model as slow as the slowest of `runs` (early stopping included) ends before `deadline`
    (time.monotonic)."""
    slowest = max((r.training.get("seconds") or float("inf")) for r in runs)
    return time.monotonic() + slowest < deadline


def _until(member: RunConfig, deadline: float, plan: Plan | None = None) -> RunConfig:
    """A model that stops at `deadline` (time.monotonic) if early stopping has not stopped it: a seed added in the time
    early stopping left, or a planned one on a machine slower than at the pilot (`plan`: never below the minutes it
    planned for one model, so setup that overran the budget does not leave a model untrained)."""
    planned_s = plan.estimate.get("training_s", 0) / max(member.train.ensemble, 1) if plan else 0.0
    member.train.max_minutes = max((deadline - time.monotonic()) / 60, planned_s / 60, 0.1)
    return member


def _first_member(run: Run, planned: RunConfig, plan: Plan) -> Run:
    """A planned single model that early stopping ended in time for more becomes the first member of an ensemble in
    its place (<run>/members/seed<k>): the ensemble is staged beside it, the model moved in, the ensemble renamed into
    place; a kill between the renames leaves the staged folder, which `finish_first_member` puts in place."""
    base, staged = run.path, staged_ensemble(run.path)
    if staged.exists() and any((staged / MEMBERS).glob("*")):
        raise ConfigError(f"{staged}: an earlier run killed while it became an ensemble; `meddx train --resume {base}`")
    shutil.rmtree(staged, ignore_errors=True)  # a kill before the model moved in: the single model is still whole
    (staged / MEMBERS).mkdir(parents=True)
    open_ensemble(staged, planned, plan, "ensemble")
    base.rename(staged / MEMBERS / seed_config(planned, base, 0).name)
    finish_first_member(base)
    return Run(base / MEMBERS / seed_config(planned, base, 0).name)


def finish_first_member(path: Path) -> None:
    """Put a staged ensemble whose first member has moved in (see `_first_member`) in place of `path`, the member's
    config renamed to match; nothing when there is none."""
    path = Path(path).absolute()  # `--resume .` has no name to stage beside
    staged = staged_ensemble(path)
    if path.exists() or not (staged / CONFIG).is_file():
        return
    member = seed_config(load_config(staged / CONFIG), path, 0)
    save_config(member, staged / MEMBERS / member.name / CONFIG)
    staged.rename(path)


def plan_folder(base: Path, plan: Plan) -> Path:
    """`base`, or base-2, base-3...: the first that holds no plan, or a plan of the same data (two data sets with one
    name, such as two `labels.csv`, overwrote each other's plan)."""
    for k in range(1, 1000):
        folder = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            origin = json.loads((folder / PLAN).read_text())["fingerprint"]["origin"]
        except (OSError, ValueError, KeyError, TypeError):
            return folder  # no plan there (or not one meddx can read: a plan written again replaces it)
        if origin == plan.fingerprint["origin"]:
            return folder
    return base


def seed_config(planned: RunConfig, base: Path, i: int) -> RunConfig:
    """The config of the ensemble's i-th seed, under <base>/members/seed<k>."""
    member = planned.model_copy(deep=True)
    member.name, member.output_dir = f"seed{planned.train.seed + i}", str(base / MEMBERS)
    member.train.seed, member.train.ensemble = planned.train.seed + i, 1
    return member


def _planned_size(cfg: RunConfig, plan: Plan, distributed: bool) -> bool:
    """Whether the plan (not the user) set the number of models and the epochs, so seeds may be added."""
    return not distributed and not {"train.ensemble", "train.max_epochs"} & set(Planner(cfg, plan).user)
