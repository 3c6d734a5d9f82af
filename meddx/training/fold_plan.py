"""The plan of a cross-validation: the rules' recipe made once, on fold 0's split, with the budget shared by the folds
and one model per fold (the folds' models are the ensemble); kept in <cv>/plan.json so that every fold, and a rerun
that resumes, trains the same recipe."""

from __future__ import annotations

import json
from pathlib import Path

from meddx.config import RUNTIME, RunConfig
from meddx.errors import ConfigError
from meddx.run import CONFIG, PLAN
from meddx.training.plan import Plan, Planner, user_fields


def plan_folds(cfg: RunConfig, cv_dir: Path, folds: int) -> tuple[RunConfig, Plan | None, object | None]:
    """(the planned config, the plan, fold 0's data module or None): the saved plan while the user's settings are those
    it was made under; none for folds trained before `meddx cv` planned (they go on as they were); else a new plan."""
    saved = cv_dir / PLAN
    trained = any(cv_dir.glob(f"fold*/{CONFIG}"))
    if saved.is_file():
        plan = Plan.from_dict(json.loads(saved.read_text()))
        differ = changed_choices(cfg, plan)
        if not differ:
            for name, value in _runtime(user_fields(cfg)).items():  # where a fold runs is the user's to change
                Planner(cfg, plan).choose(name, value, "where the folds run")
            return plan.apply(cfg), plan, None
        if trained:
            raise ConfigError(
                f"{cv_dir}: its folds were planned under other settings ({'; '.join(differ[:3])}); give the CV "
                "another --name, or remove that folder to train again"
            )
    elif trained:
        return cfg, None, None
    return _new_plan(cfg, cv_dir, folds)


def changed_choices(cfg: RunConfig, plan: Plan) -> list[str]:
    """What the user's settings now say against the plan's record of them (empty: the plan still holds)."""
    user = user_fields(cfg)
    runtime = _runtime({c.field: c.value for c in plan.choices} | user)
    out = [f"plan.budget_minutes: {plan.budget_minutes:g} then, {cfg.plan.budget_minutes:g} now"]
    out = out if plan.budget_minutes != cfg.plan.budget_minutes else []
    for c in plan.choices:
        if c.field in runtime:
            continue
        if (c.source == "user") != (c.field in user) or (c.field in user and user[c.field] != c.value):
            then = repr(c.value) if c.source == "user" else f"planned {c.value!r}"
            now = repr(user[c.field]) if c.field in user else "not set"
            out.append(f"{c.field}: {then} then, {now} now")
    return out


def _runtime(fields: dict) -> dict:
    """The fields among `fields` that say where and how fast a fold runs, not what it learns."""
    return {k: v for k, v in fields.items() if k.startswith("train.") and k.split(".", 1)[1] in RUNTIME}


def _new_plan(cfg: RunConfig, cv_dir: Path, folds: int) -> tuple[RunConfig, Plan, object]:
    """Plan on fold 0 with the budget's share of one fold and one model, then record the whole budget and why."""
    from meddx.training.autofit import plan_run  # Lightning only when a CV plans
    from meddx.training.distributed import is_rank_zero

    share = cfg.model_copy(deep=True)
    share.plan.budget_minutes, share.plan.max_ensemble = cfg.plan.budget_minutes / folds, 1
    share.split.folds, share.split.fold = folds, 0
    _, data, plan = plan_run(share)
    if plan is None:  # planning off in this config after all
        return cfg, None, data
    plan.budget_minutes = minutes = cfg.plan.budget_minutes
    why = f"one model a fold (the {folds} folds' models are the ensemble), {minutes / folds:.1f} of {minutes:g} min"
    Planner(cfg, plan).choose("train.ensemble", 1, why, "budget")
    if plan.alternatives:
        plan.selection = {
            "chosen": None,
            "reason": "cross-validation trains the rules' recipe on every fold; to choose between recipes, run a CV "
            "of each (--name) and `meddx compare` them",
        }
    if is_rank_zero():
        cv_dir.mkdir(parents=True, exist_ok=True)
        plan.save(cv_dir / PLAN)
    return plan.apply(cfg), plan, data
