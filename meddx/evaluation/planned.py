"""A planned run's models made one run to evaluate: the members averaged, the planned config and plan written, test-time
augmentation judged on val; the same for a folder of several models whose training was killed and is resumed."""

from __future__ import annotations

from pathlib import Path

from meddx.config import RunConfig, save_config
from meddx.evaluation.ensemble import ensemble_runs
from meddx.evaluation.selection import compare_runs, decide_tta
from meddx.run import CONFIG, ENSEMBLE, PLAN, Run, read_status
from meddx.training.distributed import is_rank_zero
from meddx.training.plan import Plan
from meddx.training.resume import resume_ensemble
from meddx.training.resume_search import resume_search


def conclude(runs: list[Run], base: Path | None, planned: RunConfig, plan: Plan | None, user_cfg: RunConfig) -> Run:
    """`runs[0]`, or the members averaged into `base` (kept as they are when averaged before a kill), with the planned
    config and the plan, saved before test-time augmentation is judged on val (unless it was judged before)."""
    run = runs[0]
    if base is not None:
        run = Run(base) if (base / ENSEMBLE).is_file() else ensemble_runs(runs, base, evaluate=False)
        save_config(planned, base / CONFIG)  # the plan's (seed, number of models), not its first member's
    if plan is not None:
        plan.save(run.path / PLAN)  # the choices made on val: a run killed from here on keeps them
        if not plan.tta:
            run = decide_tta(run, user_cfg, plan)
            plan.save(run.path / PLAN)
    return run


def resume_members(path: Path) -> Run | None:
    """Finish a killed folder of several models, a search between candidates (`resume_search`) or a planned ensemble
    of seeds: the run to evaluate (None in the worker processes of a distributed run)."""
    if read_status(path).get("kind") == "search":
        members, planned, plan, user_cfg = resume_search(path, compare_runs)
        return conclude(members, path, planned, plan, user_cfg)
    members, cfg, made = resume_ensemble(path)
    if not is_rank_zero():
        return None  # a worker process of a distributed run: rank 0 averages and evaluates
    run = Run(path) if (path / ENSEMBLE).is_file() else ensemble_runs(members, path, evaluate=False)
    save_config(cfg, run.path / CONFIG)
    if made is not None:
        made.save(run.path / PLAN)
    return run
