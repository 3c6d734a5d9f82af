"""Choices that need data, made on val: the rule's candidate and the plan's alternatives (a wider or deeper model, a
larger input) each train REPEATS seeds for the same epochs; a chooser from the evaluation layer compares their val
predictions with intervals, ties going to the cheaper one; the winner's seeds become the ensemble, topped up with
more seeds while the budget lasts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meddx.config import RunConfig, apply_overrides, validate_config
from meddx.run import MEMBERS, PLAN, Run
from meddx.training.datamodule import RunDataModule
from meddx.training.fit import fit
from meddx.training.pilot import time_epoch
from meddx.training.plan import Plan, Planner, reserve_seconds, target_epochs
from meddx.training.writer import new_run_dir, open_ensemble

REPEATS = 2  # seeds per candidate: a choice rests on the mean of two trainings, never on one draw
MIN_EPOCHS = 15  # fewer epochs than this would judge candidates before they have learnt
SEARCH_SHARE = 0.8  # of the time left, the most the candidates may take (the rest tops up the winner's ensemble)
ONLY_ONE = "the only candidate trained: the others were skipped"  # no choice on val was made
Chooser = Callable[[dict[str, list[Run]], dict[str, float]], dict]


@dataclass
class Candidate:
    """One way to train: its config (the plan applied, plus its overrides), its data and seconds per epoch here."""

    name: str
    overrides: dict
    cfg: RunConfig
    data: RunDataModule | None  # None until a member needs it (a resumed search reads the data only to train)
    seconds_per_epoch: float


def should_search(cfg: RunConfig, plan: Plan | None, distributed: bool) -> tuple[bool, str]:
    """Whether the plan's alternatives are tried, and why not when they are not."""
    if plan is None or not plan.alternatives:
        return False, "no alternative to the rules' choice"
    if not cfg.plan.select or not cfg.plan.pilot:
        return False, "plan.select or plan.pilot is off: the rules' choice"
    if distributed:
        return False, "a distributed run trains the rules' choice"
    user = Planner(cfg, plan).user
    if "train.max_epochs" in user or "train.ensemble" in user:
        return False, "the user fixed the epochs or the number of models: the rules' choice"
    return True, ""


def _candidate(cfg: RunConfig, data: RunDataModule, alt: dict, rule: Candidate, deadline: float) -> Candidate | None:
    """An alternative's config and data (decoded again only when its input differs), timed by a pilot; None when its
    estimated cost (a larger size costs about the square of its side) would pass the deadline before decoding."""
    alt_cfg = validate_config(apply_overrides(cfg.model_dump(mode="json"), alt["set"]))
    if any(k.startswith("data.") for k in alt["set"]):
        ratio = (alt_cfg.data.image_size / max(cfg.data.image_size, 1)) ** 2
        if time.monotonic() + REPEATS * rule.seconds_per_epoch * ratio * MIN_EPOCHS > deadline:
            return None
        alt_data = RunDataModule(alt_cfg)
        alt_data.dataset, alt_data.leakage = data.dataset, data.leakage
    else:
        alt_data = data
    alt_data.setup()
    return Candidate(alt["name"], alt["set"], alt_cfg, alt_data, time_epoch(alt_cfg, alt_data)["seconds_per_epoch"])


def member_config(c: Candidate, base: Path, i: int, epochs: int) -> RunConfig:
    """The config of candidate `c`'s i-th seed, under <base>/members/<candidate>-seed<k>."""
    m = c.cfg.model_copy(deep=True)
    seed = c.cfg.train.seed + i
    m.name, m.output_dir = f"{c.name.replace(' ', '')}-seed{seed}", str(base / MEMBERS)
    m.train.seed, m.train.ensemble, m.train.max_epochs = seed, 1, epochs
    m.train.patience = int(min(max(epochs // 4, 3), 10))
    return m


def candidates_in_budget(cfg: RunConfig, data: RunDataModule, plan: Plan, deadline: float) -> list[Candidate]:
    """The rule's candidate and every alternative (each timed by a pilot) while REPEATS seeds of all of them fit the
    search's share of the time left at MIN_EPOCHS or more; their epochs (at most the plan's target) and the skipped
    ones are recorded in plan.selection."""
    rule = Candidate(_rule_name(cfg), {}, cfg, data, plan.pilot["seconds_per_epoch"])
    tried, skipped = [rule], []
    share = SEARCH_SHARE * (deadline - time.monotonic())
    for alt in plan.alternatives:
        spent = REPEATS * MIN_EPOCHS * sum(c.seconds_per_epoch for c in tried)
        c = _candidate(cfg, data, alt, rule, time.monotonic() + share - spent)
        if c is not None and spent + REPEATS * MIN_EPOCHS * c.seconds_per_epoch <= share:
            tried.append(c)
        else:
            need = "" if c is None else f": {REPEATS * MIN_EPOCHS * c.seconds_per_epoch / 60:.1f} min"
            skipped.append(f"{alt['name']} ({REPEATS} x {MIN_EPOCHS} epochs pass the search's share{need})")
    fit_epochs = share // (REPEATS * sum(c.seconds_per_epoch for c in tried))
    epochs = int(min(target_epochs(plan.pilot["steps_per_epoch"]), max(fit_epochs, MIN_EPOCHS)))
    costs = {c.name: c.seconds_per_epoch for c in tried}  # what a resumed search compares again
    plan.selection = {"skipped": skipped, "repeats": REPEATS, "epochs": epochs, "candidates": costs}
    if len(tried) == 1:
        plan.selection.update(chosen=None, reason=f"no alternative fits {SEARCH_SHARE:.0%} of the budget left")
    return tried


def search(user_cfg: RunConfig, tried: list[Candidate], plan: Plan, choose: Chooser, deadline: float) -> tuple:
    """Train REPEATS seeds of every candidate, choose on val, top up the winner's seeds while time is left before
    `deadline` (time.monotonic); returns (winner's runs, ensemble folder, winner's config) and records the verdict
    in `plan.selection` and the choices (`user_cfg`: the user's own config, whose fields stay theirs)."""
    epochs, cfg = plan.selection["epochs"], tried[0].cfg
    base = new_run_dir(cfg)
    plan.selection["seconds_left"] = round(deadline - time.monotonic(), 1)  # the budget a resumed search goes on with
    open_ensemble(base, cfg, plan, "search")
    train = lambda c, i: fit(member_config(c, base, i, epochs), c.data, plan)  # noqa: E731
    return settle(user_cfg, tried, plan, choose, base, train, time.monotonic(), deadline)


def settle(
    user_cfg: RunConfig,
    tried: list[Candidate],
    plan: Plan,
    choose: Chooser,
    base: Path,
    train: Callable[[Candidate, int], Run],
    started: float,
    deadline: float,
) -> tuple:
    """The search from `base` on (`train(c, i)` gives candidate c's i-th seed, trained or found): every candidate's
    seeds, the choice on val (kept when plan.selection already holds one), the winner's seeds topped up, the choices
    recorded; `started`: when the search began (time.monotonic)."""
    runs: dict[str, list[Run]] = {}
    costs = {c.name: c.seconds_per_epoch for c in tried}
    for c in tried:
        begun = (base / MEMBERS / member_config(c, base, 0, plan.selection["epochs"]).name).is_dir()
        chosen = plan.selection.get("chosen")  # a verdict saved before a kill: every candidate had trained
        if runs and not begun and not chosen and not _candidate_fits(c, runs, costs, plan, deadline):
            _skip(plan, c, base)
            continue
        runs[c.name] = [train(c, i) for i in range(REPEATS)]
    tried = [c for c in tried if c.name in runs]
    if not plan.selection.get("chosen") and len(runs) == 1:  # every alternative skipped: nothing to compare
        plan.selection.update(chosen=tried[0].name, reason=ONLY_ONE)
    elif not plan.selection.get("chosen"):
        plan.selection.update(choose(runs, costs))
        plan.save(base / PLAN)  # a run killed from here on is not chosen again
    win = next(c for c in tried if c.name == plan.selection["chosen"])
    epochs, cap, members = plan.selection["epochs"], tried[0].cfg.plan.max_ensemble, list(runs[win.name])
    while len(members) < cap and (base / MEMBERS / member_config(win, base, len(members), epochs).name).is_dir():
        members.append(train(win, len(members)))  # seeds begun by the top-up before a kill
    members = top_up(members, deadline, cap, lambda i: train(win, i), epochs * win.seconds_per_epoch)
    _record(plan, user_cfg, win, epochs, len(members))
    plan.estimate["training_s"] = round(time.monotonic() - started, 1)  # the search and the seeds, as they ran
    plan.estimate["total_s"] = round(
        sum(plan.estimate.get(k, 0) for k in ("elapsed_before_training_s", "training_s", "reserve_s")), 1
    )
    return members, base, plan.apply(win.cfg)


def _candidate_fits(c: Candidate, runs: dict[str, list[Run]], costs: dict, plan: Plan, deadline: float) -> bool:
    """Whether candidate c's seeds, slowed as much as the members so far ran behind their pilots' seconds (a machine
    busier than at the pilot), end before `deadline` and half the reserve; else the search would pass the budget."""
    epochs = plan.selection["epochs"]
    slowdown = max(  # seconds per epoch run against the pilot's: early stopping must not hide a busier machine
        (m.training.get("seconds") or 0) / ((m.training.get("epochs_run") or epochs) * costs[name])
        for name in runs
        for m in runs[name]
    )
    grace = reserve_seconds(plan.budget_minutes * 60) / 2
    return time.monotonic() + REPEATS * epochs * c.seconds_per_epoch * max(slowdown, 1.0) < deadline + grace


def _skip(plan: Plan, c: Candidate, base: Path) -> None:
    """Candidate c leaves the search (plan.json too, so a resumed search does not train it), and why."""
    plan.selection.get("candidates", {}).pop(c.name, None)
    why = "the machine ran slower than at the pilot: its seeds would pass the budget"
    plan.selection.setdefault("skipped", []).append(f"{c.name} ({why})")
    plan.save(base / PLAN)


def top_up(members: list[Run], deadline: float, cap: int, train: Callable[[int], Run], fallback_s: float) -> list:
    """More seeds (`train(i)` makes the i-th) while the slowest member so far, early stopping included, still fits
    before `deadline` (time.monotonic), up to `cap` members."""
    per_member = max(m.training.get("seconds") or fallback_s for m in members)
    while len(members) < cap and time.monotonic() + per_member < deadline:
        members.append(train(len(members)))
    return members


def _rule_name(cfg: RunConfig) -> str:
    return f"{cfg.model.name} {cfg.data.image_size} px"


def _record(plan: Plan, user_cfg: RunConfig, win: Candidate, epochs: int, k: int) -> None:
    """The winner's fields (the verdict is in plan.selection), epochs and ensemble size among the choices."""
    verdict, p = plan.selection, Planner(user_cfg, plan)
    alone = verdict.get("reason") == ONLY_ONE  # the rules' candidate, unopposed: its values are the rules'
    why = f"{verdict['chosen']}: {ONLY_ONE}" if alone else f"{verdict['chosen']} chosen on val: {verdict['reason']}"
    rules = f"{plan.value('model.name')} {plan.value('data.image_size')} px"  # before the winner's values replace it
    for name in sorted({f for a in plan.alternatives for f in a["set"]}):
        p.choose(name, win.overrides.get(name, plan.value(name)), why, "rule" if alone else "validation")
    layout = next((c for c in plan.choices if c.field == "train.channels_last" and c.source == "pilot"), None)
    if layout is not None and win.overrides and "every candidate" not in layout.reason:  # timed on the rules' model
        layout.reason += f" (timed on the rules' {rules}; every candidate trained in this layout)"
    p.choose("train.max_epochs", epochs, f"about {epochs} epochs per model, the same for every candidate", "budget")
    p.choose("train.patience", int(min(max(epochs // 4, 3), 10)), "a quarter of the epochs, 3-10", "budget")
    p.choose("train.ensemble", k, f"the winner's {REPEATS} seeds from the search and {k - REPEATS} more", "budget")
