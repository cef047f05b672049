"""Audit's re-derivation of a sequential eval (campaign/sequential_eval.py), rule look-derivation:

  each eval.look   recomputed from the eval samples in the log with the rounds and levels the
                   plan training was requested under fixes (the runner's own functions): its
                   round's tasks, statistic, level and decision; a look in a fixed-design eval,
                   a look out of order, or one after the look that stopped the eval, fails
  decision.gate    of a sequential eval (checked under gate-derivation, campaign/rederive.py):
                   its decision is its last look's, that look ended the eval (it stopped, or it
                   was the last planned), and no eval sample was taken of a task in a round
                   after it (samples the stopping look did not need)
"""

from __future__ import annotations

from typing import Any

from dpo_tui.campaign.state.eval import EVAL
from dpo_tui.campaign.state.rollouts import ROLLOUTS
from dpo_tui.campaign.state.split import SPLIT
from dpo_tui.events.fold import CampaignState, invariant
from dpo_tui.events.store import StoredEvent

FIELDS = ("looks", "tasks_seen", "tasks_planned", "samples_seen", "samples_planned", "fraction", "one_sided_alpha",
          "level", "statistic", "decision", "criterion", "round_tasks", "suites")


def planned_rounds(state: CampaignState, plan: Any) -> list[dict[str, list[str]]] | None:
    """The eval's rounds as the runner cut them, from the split and held-out suite the log holds."""
    from dpo_tui.campaign import sequential_eval as seq

    sp = state.part(SPLIT)
    if sp.split is None:
        return None
    suites = seq.suite_ids(plan, list(sp.split.test), [t["id"] for t in sp.heldout])
    return seq.eval_rounds(plan, suites) if suites else None


def _plan(state: CampaignState, run_id: str) -> tuple[Any, str | None]:
    from dpo_tui.campaign.rederive import _training_plan
    from dpo_tui.campaign.state.plan import PLAN

    return _training_plan(state, run_id, state.part(PLAN).hash)


@invariant("look-derivation", "eval.look")
def _look_derived(state: CampaignState, event: StoredEvent) -> str | None:
    from dpo_tui.campaign import sequential_eval as seq
    from dpo_tui.campaign.rederive import _diff, _same

    p = event.payload
    where = f"eval.look {p['look']} of run {p['run_id']}"
    plan, error = _plan(state, p["run_id"])
    if plan is None:
        return f"{where}: {error}"
    if not seq.sequential(plan):
        return f"{where}: the plan training was requested under has a fixed eval design: it takes no looks"
    looks = state.part(EVAL).runs[p["run_id"]].looks  # this one folded last
    before = looks[:-1]
    if [lk["look"] for lk in before] != list(range(1, p["look"])):
        return f"{where}: out of order (looks logged before it: {[lk['look'] for lk in before]})"
    if before and seq.stopped(before[-1]):
        return f"{where}: after look {before[-1]['look']} stopped the eval ({before[-1]['decision']})"
    plan_rounds = planned_rounds(state, plan)
    if plan_rounds is None or p["look"] > len(plan_rounds):
        return f"{where}: the plan and the logged split give no such round"
    again = seq.look(state, plan, p["run_id"], plan_rounds, p["look"] - 1)
    logged, fresh = {k: p[k] for k in FIELDS}, {k: again[k] for k in FIELDS}
    if not _same(logged, fresh):
        return (f"{where}: not what the logged samples give ({_diff(fresh, logged)} differ; recomputed "
                f"{again['decision']}, statistic delta {again['statistic']['delta']:+.3f} at one-sided "
                f"alpha {again['one_sided_alpha']:.4f})")
    return None


def gate_problem(state: CampaignState, plan: Any, p: dict[str, Any]) -> str | None:
    """A sequential eval's decision.gate against its looks (called by gate-derivation)."""
    from dpo_tui.campaign import sequential_eval as seq

    looks = state.part(EVAL).runs[p["run_id"]].looks
    if not looks:
        return f"a sequential eval's gate for run {p['run_id']} without any eval.look"
    last = looks[-1]
    if not seq.stopped(last):
        return f"the gate decided after look {last['look']} of {last['looks']}, which said continue"
    if (p["decision"], p["criterion"], p.get("look")) != (last["decision"], last["criterion"], last["look"]):
        return (f"the log says {p['decision']} ({p['criterion']}, look {p.get('look')}), but the last look "
                f"{last['look']} says {last['decision']} ({last['criterion']})")
    plan_rounds = planned_rounds(state, plan) or []
    allowed = {(s, t) for r in plan_rounds[:last["look"]] for s, ids in r.items() for t in ids}
    extra = sorted({r.task_id for r in state.part(ROLLOUTS).by_id.values()
                    if r.stage == "eval" and r.run_id == p["run_id"] and (r.suite, r.task_id) not in allowed})
    if extra:
        return (f"eval samples after the stopping look {last['look']}: tasks {', '.join(extra[:4])} are in later "
                f"rounds (or in none)")
    return None
