"""Resuming a search: a planned run killed while it chose between candidates on val keeps every finished candidate
member byte for byte, resumes the one cut short from its last checkpoint and trains the missing ones with the configs
its folder recorded (the plan's alternatives, the search's epochs: no planning again), then chooses (unless it had
chosen) and tops up the winner's seeds as an uninterrupted search would."""

from __future__ import annotations

import time
from pathlib import Path

from meddx.config import RunConfig, apply_overrides, load_config, validate_config
from meddx.errors import ConfigError
from meddx.run import CONFIG, ENSEMBLE, MEMBERS, PLAN, SPLIT, Run, write_status
from meddx.training.datamodule import RunDataModule
from meddx.training.fit import fit
from meddx.training.plan import Plan
from meddx.training.resume import check_resumable, check_same_split, finished, read_plan, resume_fit
from meddx.training.search import Candidate, Chooser, member_config, settle


def resume_search(path: str | Path, choose: Chooser) -> tuple[list[Run], RunConfig, Plan, RunConfig]:
    """Finish the search of the run folder `path`: returns (the winner's members, its config, the plan, the user's own
    fields as a config). The budget goes on from what the finished members took; an averaged folder gets no seeds."""
    path = Path(path)
    check_resumable(path)
    plan, rule_cfg = _recorded_plan(path), load_config(path / CONFIG)
    tried = _candidates(path, rule_cfg, plan)
    write_status(path, "running", kind="search")  # this process's now: a second resume at once is refused
    epochs = plan.selection["epochs"]
    spent = sum(Run(f).training.get("seconds") or 0 for f in (path / MEMBERS).iterdir() if finished(f))
    left = 0.0 if (path / ENSEMBLE).is_file() else plan.selection.get("seconds_left", 0.0) - spent
    now = time.monotonic()

    def train(c: Candidate, i: int) -> Run:
        member = member_config(c, path, i, epochs)
        folder = path / MEMBERS / member.name
        if finished(folder):
            return Run(folder)
        if (folder / CONFIG).is_file():
            return resume_fit(folder)
        # a folder made but never configured (killed before its first step) trains there from the start
        return fit(member, _data(c, tried, path), plan, resume=folder if folder.is_dir() else None)

    user = user_config(rule_cfg, plan)
    members, _, cfg = settle(user, tried, plan, choose, path, train, now - spent, now + left)
    return members, cfg, plan, user


def user_config(saved: RunConfig, plan: Plan) -> RunConfig:
    """The user's own fields as the plan recorded them (source user) and the saved plan settings: what a Planner
    needs to keep the user's fields theirs."""
    user = {c.field: c.value for c in plan.choices if c.source == "user"}
    return validate_config(apply_overrides({"plan": saved.plan.model_dump(mode="json")}, user))


def _recorded_plan(path: Path) -> Plan:
    """The plan the search wrote, with its candidates, their seconds per epoch and their epochs; else one line."""
    plan = read_plan(path)
    if plan is None:
        raise ConfigError(f"{path}: no {PLAN}, so the candidates of its search are unknown; train it again")
    missing = [k for k in ("epochs", "candidates") if k not in plan.selection]
    if missing:
        raise ConfigError(
            f"{path / PLAN}: its selection records no {' and no '.join(missing)} of the search (begun by an older "
            "meddx); train it again"
        )
    return plan


def _candidates(path: Path, rule_cfg: RunConfig, plan: Plan) -> list[Candidate]:
    """The candidates in the order they were tried: the rules' own (the saved config) first, then the alternatives
    with their `set` overrides, each with the seconds per epoch its pilot measured."""
    alts = {a["name"]: a for a in plan.alternatives}
    tried = []
    for i, (name, seconds) in enumerate(plan.selection["candidates"].items()):
        if i and name not in alts:
            raise ConfigError(f"{path / PLAN}: the search's candidate '{name}' is not among its alternatives")
        overrides = alts[name]["set"] if i else {}
        cfg = validate_config(apply_overrides(rule_cfg.model_dump(mode="json"), overrides)) if i else rule_cfg
        tried.append(Candidate(name, overrides, cfg, None, seconds))
    return tried


def _data(c: Candidate, tried: list[Candidate], path: Path) -> RunDataModule:
    """Candidate c's data module, made when a member first needs it: the data read again once and checked against the
    split the members trained on, decoded again only for a candidate of another input (as the search did)."""
    rule = tried[0]
    if rule.data is None:
        rule.data = RunDataModule(rule.cfg)
        rule.data.read()
        for split in sorted((path / MEMBERS).glob(f"*/{SPLIT}"))[:1]:
            check_same_split(split.parent, rule.data)
    if c.data is None:
        c.data = rule.data
        if any(k.startswith("data.") for k in c.overrides):
            c.data = RunDataModule(c.cfg)
            c.data.dataset, c.data.leakage = rule.data.dataset, rule.data.leakage
    c.data.setup("fit")
    return c.data
