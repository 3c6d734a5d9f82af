"""The plan of a cross-validation: the rules' recipe made once, on fold 0's split, the budget fitting one model a fold
for every fold (the folds' models are the ensemble); kept in <cv>/plan.json so that every fold, and a rerun that
resumes, trains the same recipe."""

from __future__ import annotations

import json
from pathlib import Path

from meddx.config import RUNTIME, RunConfig, as_config, paths_resolved
from meddx.errors import ConfigError
from meddx.run import CONFIG, PLAN
from meddx.training.plan import Choice, Plan, Planner, user_fields


def plan_folds(cfg: RunConfig, cv_dir: Path, folds: int) -> tuple[RunConfig, Plan | None, object | None]:
    """(the planned config, the plan, fold 0's data module or None): the saved plan while the data, folds and the
    user's settings are those it was made under; none for folds trained before `meddx cv` planned (they go on as they
    were); else a new plan."""
    saved = cv_dir / PLAN
    trained = any(cv_dir.glob(f"fold*/{CONFIG}"))
    if saved.is_file():
        plan = Plan.from_dict(json.loads(saved.read_text()))
        differ = changed_choices(cfg, plan, folds)
        if not differ:
            for name, value in _runtime(user_fields(cfg)).items():  # where a fold runs is the user's to change
                plan.choices = [c for c in plan.choices if c.field != name] + [Choice(name, value, "yours", "user")]
            return plan.apply(cfg), plan, None
        if trained:
            raise ConfigError(
                f"{cv_dir}: its folds were planned under other settings ({'; '.join(differ[:3])}); give the CV "
                "another --name, or remove that folder to train again"
            )
    elif trained:
        return cfg, None, None
    return _new_plan(cfg, cv_dir, folds)


def changed_choices(cfg: RunConfig, plan: Plan, folds: int) -> list[str]:
    """What the data, folds and the user's settings now say against the plan's record of them (empty: it holds)."""
    user, then = user_fields(cfg), plan.selection.get("cv", {})
    runtime = _runtime({c.field: c.value for c in plan.choices} | user)
    now = _cv_settings(cfg, folds)
    chosen = {c.field for c in plan.choices}  # compared below, with who set them
    out = [
        f"{k}: {then[k]!r} then, {v!r} now" for k, v in now.items() if k in then and then[k] != v and k not in chosen
    ]  # fmt: skip (a field a later meddx added is not a change)
    if plan.budget_minutes != cfg.plan.budget_minutes:
        out.append(f"plan.budget_minutes: {plan.budget_minutes:g} then, {cfg.plan.budget_minutes:g} now")
    for c in plan.choices:
        if c.field in runtime:
            continue
        if c.field in user and user[c.field] == c.value:
            continue  # the value the folds trained with, now given by the user: nothing differs
        if (c.source == "user") != (c.field in user) or c.field in user:
            was = repr(c.value) if c.source == "user" else f"planned {c.value!r}"
            out.append(f"{c.field}: {was} then, {repr(user[c.field]) if c.field in user else 'not set'} now")
    return out


def _cv_settings(cfg: RunConfig, folds: int) -> dict:
    """The folds and the data and split sections as the user gave them (paths resolved): what a plan was made for."""
    out = {"folds": folds}
    for section in ("data", "split"):
        for key, value in paths_resolved(getattr(cfg, section).model_dump(mode="json", exclude={"cache"})).items():
            out[f"{section}.{key}"] = value
    return out


def _runtime(fields: dict) -> dict:
    """The fields among `fields` that say where and how fast a fold runs, not what it learns."""
    return {k: v for k, v in fields.items() if k.startswith("train.") and k.split(".", 1)[1] in RUNTIME}


def _new_plan(cfg: RunConfig, cv_dir: Path, folds: int) -> tuple[RunConfig, Plan, object]:
    """Plan on fold 0 as for an ensemble of one model a fold in the whole budget (no pilot when the user fixed the
    epochs and the rate: it would only time what they chose), then record one model a fold and why."""
    from meddx.training.autofit import plan_run  # Lightning only when a CV plans
    from meddx.training.distributed import is_rank_zero

    pilot = cfg.plan.pilot and not {"train.max_epochs", "train.lr"} <= set(user_fields(cfg))  # it prices the finder
    share = as_config(cfg, {"plan.max_ensemble": folds, "train.ensemble": folds, "split.folds": folds,
                            "split.fold": 0, "plan.pilot": pilot})  # fmt: skip
    resolved, data, plan = plan_run(share)
    if plan is None:  # planning off in this config after all
        return cfg, None, data
    why = f"one model a fold: the {folds} folds' models are the ensemble"
    Planner(cfg, plan).choose("train.ensemble", 1, why, "budget")
    plan.selection = {"cv": _cv_settings(cfg, folds)}
    if plan.alternatives:
        plan.selection |= {
            "chosen": None,
            "reason": "cross-validation trains the rules' recipe on every fold; to choose between recipes, run a CV "
            "of each (--name) and `meddx compare` them",
        }
    if is_rank_zero():
        cv_dir.mkdir(parents=True, exist_ok=True)
        plan.save(cv_dir / PLAN)
    planned = plan.apply(cfg)
    planned.data.vocab, planned.model.kwargs = resolved.data.vocab, resolved.model.kwargs  # as fold 0 resolved them
    return planned, plan, data
