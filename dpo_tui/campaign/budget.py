"""The budget stage: the plan's estimate, logged with its inputs; the pilot calibration."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dpo_tui.campaign.plan import Plan
from dpo_tui.domain.costs import BudgetInputs, Estimate, Price, estimate, expected_iterations
from dpo_tui.domain.yields import Outcome
from dpo_tui.events.campaign import Campaign
from dpo_tui.provider.prices import PriceTable


def model_price(plan: Plan, prices: PriceTable, model: str) -> Price:
    if model == plan.models.generator and plan.models.generator_serving == "dedicated":
        return Price(0.0, 0.0, "dedicated endpoint (generator): billed per minute")
    if model in plan.budget.prices:
        o = plan.budget.prices[model]
        return Price(o.input_usd_per_mtok, o.output_usd_per_mtok, "plan [budget.prices]")
    p = prices.serverless[model]
    return Price(p.input_per_1m, p.output_per_1m, f"price table {prices.date}")


def split_sizes(plan: Plan, n_pool: int, n_heldout: int) -> tuple[int, int]:
    """(train tasks, eval tasks) the plan implies before the split exists."""
    n_test = round(n_pool * plan.split.test_fraction)
    n_eval = (n_test if "test" in plan.eval.suites else 0) + (n_heldout if "heldout" in plan.eval.suites else 0)
    return n_pool - n_test, n_eval


def iteration_guesses(plan: Plan) -> tuple[float, float]:
    """(avg_iters, avg_reflections) before the pilot: the plan's guesses, or where it gives
    none, from its solve-rate prior and max_iters; a reflection follows each failed iteration
    but the last, so a rollout of i iterations makes i - 1 reflections (none when off)."""
    b, r = plan.budget, plan.rollouts
    iters = b.avg_iters if b.avg_iters is not None else expected_iterations(b.solve_rate_per_iter, r.max_iters)
    if not r.reflections:
        return iters, 0.0
    return iters, b.avg_reflections if b.avg_reflections is not None else max(iters - 1.0, 0.0)


def generator_hardware(plan: Plan, prices: PriceTable) -> tuple[str | None, int]:
    """(instance, price in cents per hour of every replica) of a dedicated generator; (None, 0) serverless."""
    m = plan.models
    if m.generator_serving != "dedicated":
        return None, 0
    instance = m.generator_hardware or prices.dedicated.get(m.generator)
    it = prices.instances.get(instance) if instance else None
    return instance, (it.price_cents_per_hour * m.generator_replicas if it else 0)


def shared_eval_deployment(plan: Plan, prices: PriceTable) -> bool:
    """Base and tuned on one deployment, the tuned LoRA attached to the base's: the plan allows it
    (models.eval_adapters = "auto"), the job trains a LoRA of the very base the eval serves, and
    the catalogue says that base's deployment hosts adapters."""
    base = plan.models.eval_base or plan.models.policy_base
    return (plan.models.eval_adapters == "auto" and plan.training.lora and base == plan.models.policy_base
            and prices.hosts_adapters(base))


def run_shares_deployment(plan: Plan, prices: PriceTable, run: Any) -> bool:
    """This run's eval shares one deployment: the plan and catalogue allow it and its job
    logged an adapter to attach (one logged before adapters were recorded has none)."""
    return shared_eval_deployment(plan, prices) and bool(getattr(run, "adapter_object_id", None)
                                                         and getattr(run, "adapter_object_name", None))


def serving_words(shared: bool) -> str:
    """What the eval starts, in the words its confirmation uses."""
    return ("1 dedicated endpoint for base and tuned (the tuned LoRA attached to the base's deployment)" if shared
            else "2 dedicated endpoints (base and tuned)")


def eval_endpoints(plan: Plan, prices: PriceTable) -> int:
    """Dedicated endpoints the eval bills: one shared deployment, else base and tuned apart."""
    return 1 if shared_eval_deployment(plan, prices) else 2


def budget_inputs(plan: Plan, prices: PriceTable, *, train_tasks: int, eval_tasks: int) -> BudgetInputs:
    b, r = plan.budget, plan.rollouts
    iters, refl = iteration_guesses(plan)
    instance = prices.dedicated.get(plan.models.eval_base or plan.models.policy_base)
    per_hour = prices.instances[instance].price_cents_per_hour / 100 if instance in prices.instances else 0.0
    return BudgetInputs(
        tasks=train_tasks, rollouts_per_task=r.rollouts_per_task, max_iters=r.max_iters,
        avg_iters=iters, avg_reflections=refl,
        reflections=r.reflections, prompt_tokens_per_call=b.prompt_tokens_per_call,
        completion_tokens_per_call=b.completion_tokens_per_call,
        generator_price=model_price(plan, prices, plan.models.generator),
        target_pairs=plan.pairs.target_pairs,
        pair_tokens=b.prompt_tokens_per_call + 2 * b.completion_tokens_per_call,
        dpo_epochs=plan.training.n_epochs,
        training_usd_per_mtok=prices.training_rate(plan.models.policy_base, "dpo", plan.training.lora),
        training_minimum_usd=prices.training[plan.models.policy_base].minimum_charge,
        eval_tasks=eval_tasks, eval_runs=len(plan.eval.seeds), eval_models=2,
        eval_avg_iters=iters, eval_avg_reflections=refl, eval_solve_rate=b.solve_rate_per_iter,
        eval_prompt_tokens_per_call=b.prompt_tokens_per_call,
        eval_completion_tokens_per_call=b.completion_tokens_per_call,
        eval_price=None,  # base and tuned both on dedicated endpoints: billed by the minute
        endpoint_minutes=plan.eval.endpoint_minutes, endpoint_usd_per_hour=per_hour,
        endpoints=eval_endpoints(plan, prices),
        prompt_growth_per_call=b.completion_tokens_per_call + b.feedback_tokens_per_call,
        eval_prompt_growth_per_call=b.completion_tokens_per_call + b.feedback_tokens_per_call,
        provisioning_minutes=plan.eval.provisioning_minutes,
        endpoint_tokens_per_s=plan.eval.endpoint_tokens_per_s, eval_concurrency=r.concurrency,
        generator_endpoint_usd_per_hour=generator_hardware(plan, prices)[1] / 100,
        generator_provisioning_minutes=r.provisioning_minutes,
        generator_tokens_per_s=r.endpoint_tokens_per_s * plan.models.generator_replicas, rollout_concurrency=r.concurrency)


def pilot_outcomes(campaign: Campaign, rollout_ids: list[str]) -> dict[str, list[Outcome]]:
    """Each pilot task's finished rollouts as the funnel sees them (passed, score, normalised
    final program), from the log: what the per-task pair yield and the eval's power use."""
    from dpo_tui.campaign.state.rollouts import ROLLOUTS
    from dpo_tui.domain.code import normalized

    by_id = campaign.state.part(ROLLOUTS).by_id
    out: dict[str, list[Outcome]] = {}
    for rid in rollout_ids:
        rec = by_id.get(rid)
        if rec is None or rec.finished is None:
            continue
        f = campaign.store.event_at(rec.finished["seq"]).payload
        score = f["tests_passed"] / f["tests"] if f.get("tests") else 0.0
        out.setdefault(rec.task_id, []).append(Outcome(bool(f["passed"]), score, normalized(f["final_program"] or "")))
    return out


def prices_json(prices: PriceTable) -> dict:
    """Where an estimate's prices come from and as of when (`estimate --json`'s `prices`)."""
    return {"origin": prices.origin, "as_of": prices.date, "source": prices.source}


def inputs_json(inp: BudgetInputs) -> dict:
    return asdict(inp)


def record_estimate(campaign: Campaign, inp: BudgetInputs, est: Estimate, *, prices: PriceTable,
                    train_tasks: int, eval_tasks: int, actor: str) -> None:
    campaign.append("budget.estimated", {
        "inputs": inputs_json(inp), "estimate": est.to_json(), "prices_source": f"{prices.source} ({prices.date})",
        "prices": prices_json(prices),
        "train_tasks": train_tasks, "eval_tasks": eval_tasks}, actor=actor)


def plan_estimate(plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int) -> tuple[BudgetInputs, Estimate]:
    train, ev = split_sizes(plan, n_pool, n_heldout)
    inp = budget_inputs(plan, prices, train_tasks=train, eval_tasks=ev)
    return inp, estimate(inp)


def parse_cap(raw: str | float) -> float:
    """An operator's cap (typed text like "$2.50", or a number) as USD; InputError naming what is wrong."""
    from dpo_tui.errors import InputError
    from dpo_tui.provider.provider import check_cap

    if isinstance(raw, str):
        try:
            raw = float(raw.strip().lstrip("$").replace(",", ""))
        except ValueError:
            raise InputError(f"budget cap: {raw.strip()!r} is not a number of USD") from None
    return check_cap(raw)


def check_cap_reason(reason: str) -> str:
    from dpo_tui.errors import InputError

    if not reason.strip():
        raise InputError("a reason is required (it is logged with your name)")
    return reason.strip()


def set_operator_cap(campaign: Campaign, usd: str | float, reason: str, *, actor: str) -> float:
    """The operator sets the budget cap every later call is held against (`budget.cap_set`,
    with the reason, secrets masked): the console's c on Budget and `dpo-tui cap` alike."""
    from dpo_tui.provider.provider import set_cap
    from dpo_tui.provider.secrets import operator_text

    cap = parse_cap(usd)
    set_cap(campaign, cap, reason=operator_text(check_cap_reason(reason)), actor=actor)
    return cap


def what_if(plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int, budget_changes: dict[str, Any],
            rollouts_changes: dict[str, Any]) -> tuple[Plan, BudgetInputs, Estimate]:
    """The estimate for the plan with these budget and rollouts inputs changed; InputError
    naming the field the plan's own validation refuses."""
    from pydantic import ValidationError

    from dpo_tui.errors import InputError

    raw = plan.canonical()
    raw["budget"] = {**raw["budget"], **budget_changes}
    raw["rollouts"] = {**raw["rollouts"], **rollouts_changes}
    try:
        changed = Plan.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    inp, est = plan_estimate(changed, prices, n_pool=n_pool, n_heldout=n_heldout)
    return changed, inp, est


def parse_input(field: str, raw: str) -> float | int | str:
    """A Budget input as typed (the console's field, `dpo-tui budget record`'s flag): an int for
    rollouts_per_task, else a float; text that is neither is passed on for the plan's own
    validation to refuse, naming the field."""
    try:
        return int(raw) if field == "rollouts_per_task" else float(raw)
    except ValueError:
        return raw


def record_what_if(campaign: Campaign, plan: Plan, prices: PriceTable, *, n_pool: int, n_heldout: int,
                   budget_changes: dict[str, Any], rollouts_changes: dict[str, Any], actor: str) -> None:
    """Log the what-if estimate (`budget.estimated` by the operator): the console's Budget pane."""
    _plan, inp, est = what_if(plan, prices, n_pool=n_pool, n_heldout=n_heldout, budget_changes=budget_changes,
                              rollouts_changes=rollouts_changes)
    record_estimate(campaign, inp, est, prices=prices, train_tasks=inp.tasks, eval_tasks=inp.eval_tasks, actor=actor)
