"""The plan file: one TOML document that says what a campaign does and decides.

Validated once, with errors that name the field and the allowed values, before anything is
appended to a log. The API key never belongs here (it comes from the environment or the
config file); a plan that carries one is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from dpo_tui.errors import InputError
from dpo_tui.paths import fixtures_dir

SUITE_KINDS = ("fixtures", "quixbugs", "humanevalfix", "jsonl")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # a TOML string is not a number


class CampaignSection(_Section):
    name: str = Field(min_length=1, description="campaign name, shown everywhere")


class BackendSection(_Section):
    kind: Literal["simulator", "together"] = Field(
        "simulator", description="simulator: the embedded Together simulator (offline); together: the real API")
    base_url: str | None = Field(None, description="override the API base URL (no /v1 suffix)")
    sim_seed: int = Field(0, description="seed of the embedded simulator")
    sim_faults: str = Field("", description="faults the embedded simulator injects, e.g. '429=0.05'")
    sim_replica_slots: int = Field(
        8, ge=1, le=256, description="requests one replica of a simulated dedicated deployment serves at once "
        "(more wait their turn; sim/capacity.py)")
    sim_serving_scale: float = Field(
        0.01, ge=0, le=1, description="a simulated dedicated request's time as a share of the published serving "
        "time (time to first token + tokens at the decoding speed); 0: answers at once")


class ModelsSection(_Section):
    generator: str = Field(description="the model whose rollouts make the preference pairs")
    policy_base: str = Field(description="the model to fine-tune with DPO")
    eval_base: str | None = Field(None, description="base model for eval (default: policy_base)")
    eval_serving: Literal["dedicated"] = Field(
        "dedicated", description="base and tuned are both served on dedicated endpoints (same serving path)")
    eval_adapters: Literal["auto", "off"] = Field(
        "auto", description="auto: where the catalogue says the base's deployment hosts LoRA adapters, base and "
        "tuned share one deployment (the tuned adapter attached: one endpoint's minutes); off: two endpoints")
    generator_serving: Literal["serverless", "dedicated"] = Field(
        "serverless", description="serverless: per token; dedicated: on an endpoint of its own, billed per minute "
        "(the catalogue decides which the generator has)")
    generator_hardware: str | None = Field(
        None, description="hardware of a dedicated generator, a hardware-list name such as 2xnvidia-h100-80gb; "
        "none: the catalogue's deployment profile")
    generator_replicas: int = Field(1, ge=1, le=16, description="replicas of a dedicated generator (each billed)")


class SuitesSection(_Section):
    train_test: list[str] = Field(min_length=1, description="suites split into train and test (SPEC list)")
    heldout: list[str] = Field(default_factory=list, description="second held-out suites, never trained on")
    heldout_limit: int | None = Field(None, ge=1, description="use only the first N held-out tasks")


class SplitSection(_Section):
    seed: int = Field(0, description="seed of the split (the same tasks and seed give the same split)")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of each suite's tasks held out for test")
    stratify_by_suite: bool = Field(True, description="split each suite separately")
    near_duplicate_threshold: float = Field(
        0.8, gt=0, le=1, description="token 3-gram similarity above which two programs count as near-identical")


class RolloutsSection(_Section):
    rollouts_per_task: int = Field(4, ge=1, le=1000, description="rollouts of the generator per train task")
    max_iters: int = Field(4, ge=1, le=50, description="candidate programs per rollout at most")
    reflections: bool = Field(True, description="ask for a reflection after each failed candidate")
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature of every agent call")
    seed: int = Field(1000, description="first seed; each rollout gets seed + its index")
    max_tokens: int = Field(1024, ge=16, le=32768, description="completion tokens per call at most (the budget guard reserves them)")
    concurrency: int = Field(8, ge=1, le=512, description="rollouts in flight at once")
    pilot_rollouts: int = Field(10, ge=0, description="rollouts run for real to calibrate the budget, one per task "
                                "(the cost is calibrated on these)")
    pilot_repeats: int | None = Field(
        None, ge=0, description="of the pilot's tasks, how many also get their second rollout in the pilot (their "
        "spread of outcomes feeds the per-task pair yield and the eval's power); none: half of pilot_rollouts")
    test_cpu_seconds: float = Field(
        1.0, gt=0, le=60, description="CPU seconds per test; raised per test where the reference program needs more")
    provisioning_minutes: float = Field(
        10, ge=0, description="a dedicated generator's billed minutes before it serves (Together: up to ~20 the "
        "first time)")
    endpoint_tokens_per_s: float = Field(
        1500, gt=0, description="a dedicated generator's prompt + completion tokens per second per replica at the "
        "rollouts' concurrency (a prior; the pilot measures it)")
    allocation: Literal["uniform", "yield"] = Field(
        "uniform", description="uniform: every train task gets rollouts_per_task; yield: the same total "
        "(train tasks x rollouts_per_task) in rounds, each task its floor first, then each round's rollouts to the "
        "tasks with the most expected new kept pairs per dollar (domain/allocation.py); a task unlikely to yield "
        "more stops early, none gets more than 3 x rollouts_per_task")
    floor: int | None = Field(
        None, ge=1, description="yield allocation: rollouts every train task gets before any is allocated by yield "
        "(at most rollouts_per_task); none: min(2, rollouts_per_task)")

    @model_validator(mode="after")
    def _floor_fits(self) -> RolloutsSection:
        if self.floor is not None and self.floor > self.rollouts_per_task:
            raise ValueError(f"floor = {self.floor} is more than rollouts_per_task = {self.rollouts_per_task}: the "
                             "floor is part of the same total")
        return self

    @property
    def floor_rollouts(self) -> int:
        return self.floor if self.floor is not None else min(2, self.rollouts_per_task)


class PriceOverride(_Section):
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)


class BudgetSection(_Section):
    cap_usd: float = Field(gt=0, description="hard cap: every stage stops before crossing it")
    avg_iters: float | None = Field(
        None, gt=0, description="guess before the pilot; none: from solve_rate_per_iter and rollouts.max_iters")
    avg_reflections: float | None = Field(
        None, ge=0, description="guess before the pilot; none: one after each failed iteration but the last "
        "(avg_iters - 1), when reflections are on")
    solve_rate_per_iter: float = Field(
        0.2, gt=0, le=1, description="prior before the pilot: the chance an iteration fixes a program still failing, "
        "so a rollout runs 1 + (1-q) + ... + (1-q)^(max_iters-1) iterations on average")
    prompt_tokens_per_call: float = Field(900, gt=0, description="guess before the pilot: the first call's prompt "
                                          "(task, program, failing tests)")
    completion_tokens_per_call: float = Field(250, gt=0, description="guess before the pilot")
    feedback_tokens_per_call: float = Field(
        150, ge=0, description="guess before the pilot: test output and instructions each later call adds to the "
        "conversation (the prompt of call i carries the whole conversation before it)")
    prices: dict[str, PriceOverride] = Field(default_factory=dict, description="per-model price overrides")


class PairsSection(_Section):
    target_pairs: int = Field(40, ge=1, description="pairs the campaign aims for (pair yield warns when out of reach)")
    min_margin: float = Field(0.2, ge=0, le=1, description="least score gap (fraction of tests) between chosen and rejected")
    per_task_cap: int = Field(4, ge=1, description="pairs per task at most, largest margins first")
    near_duplicate_threshold: float = Field(
        0.9, gt=0, le=1, description="a pair program this similar to a test task's program is leakage")


class TrainingSection(_Section):
    lora: bool = Field(True, description="LoRA (true) or full fine-tuning")
    dpo_beta: float = Field(gt=0, le=10, description="DPO beta (strength of the KL anchor to the reference)")
    n_epochs: int = Field(ge=1, le=20, description="passes over the pairs")
    batch_size: int = Field(ge=1, description="must fit the model limits' DPO batch sizes")
    learning_rate: float = Field(gt=0, lt=1, description="peak learning rate")
    lora_r: int = Field(ge=1, le=256, description="LoRA rank")
    lora_alpha: int = Field(ge=1, description="LoRA alpha")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    max_seq_length: int = Field(ge=256, le=131072, description="context of a pair: prompt + chosen + rejected must fit")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps warming up")
    lr_scheduler_type: Literal["linear", "cosine"] = Field("linear", description="learning-rate schedule")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final learning rate as a share of the peak")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    lora_trainable_modules: str = Field("all-linear", description="modules LoRA adapts")
    random_seed: int = Field(0, description="training seed")
    dpo_normalize_logratios_by_length: bool = Field(
        False, description="divide each answer's log-ratio by its length (SimPO turns it on)")
    rpo_alpha: float = Field(0.0, ge=0, le=10, description="weight of the NLL term on the chosen answer (RPO); 0: off")
    simpo_gamma: float = Field(
        0.0, ge=0, le=10, description="SimPO target margin; > 0 makes the job reference-free SimPO")
    validation_share: float = Field(
        0.0, ge=0, le=0.5, description="share of the train tasks whose pairs are held back as the validation file")
    n_evals: int = Field(0, ge=0, le=100, validate_default=True,
                         description="evaluations of the validation loss during training (needs validation_share)")
    n_checkpoints: int = Field(1, ge=1, le=100, description="checkpoints saved during training")
    suffix: str = Field("dpo-tui", pattern=r"^[A-Za-z0-9-]{1,40}$", description="suffix of the output model name")


    @field_validator("n_evals")
    @classmethod
    def _evals_need_validation(cls, v: int, info: ValidationInfo) -> int:
        share = info.data.get("validation_share", 0.0)
        if v > 0 and not share:
            raise ValueError(f"n_evals = {v} needs a validation file: set training.validation_share (e.g. 0.2)")
        if share and v == 0:
            raise ValueError(f"validation_share = {share} holds pairs back for nothing: set training.n_evals >= 1")
        return v


class EvalSection(_Section):
    seeds: list[int] = Field(min_length=1, description="one fixed seed per run, the same for base and tuned")
    suites: list[Literal["test", "heldout"]] = Field(
        default_factory=lambda: ["test", "heldout"], description="the frozen test split and/or the held-out suite")
    k: int = Field(1, ge=1, description="pass@k reported besides pass@1 (k <= number of seeds)")
    endpoint_minutes: float | None = Field(
        None, ge=0, description="fixed estimate of endpoint minutes per model; none: provisioning_minutes + the "
        "eval's tokens / endpoint_tokens_per_s, in started minutes")
    provisioning_minutes: float = Field(
        10, ge=0, description="billed minutes before an endpoint serves (Together: up to ~20 the first time)")
    design: Literal["fixed", "sequential"] = Field(
        "fixed", description="fixed: every task x seed runs; sequential: tasks run in rounds and the gate looks "
        "after each (O'Brien-Fleming-type alpha spending, A/A ship and rollback each <= alpha/2), stopping early")
    looks: int = Field(3, ge=1, le=20, description="rounds (gate looks) of a sequential eval")
    endpoint_tokens_per_s: float = Field(
        1500, gt=0, description="prompt + completion tokens one endpoint serves per second at the eval's concurrency "
        "(a prior)")
    concurrency: int | Literal["auto"] = Field(
        "auto", description="eval rollouts in flight: auto starts at rollouts.concurrency and follows the endpoints' "
        "measured latency (more while nothing queues, fewer once requests wait; each change logged); N: fixed")
    max_concurrency: int = Field(64, ge=1, le=512, description="the most eval rollouts in flight auto goes to")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency_auto_or_count(cls, v: Any) -> int | str:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 512):
            return v
        raise ValueError(f"concurrency = {v!r}: give 1..512 rollouts in flight, or \"auto\"")

    @model_validator(mode="after")
    def _k_fits(self) -> EvalSection:
        if self.k > len(self.seeds):
            raise ValueError(f"k={self.k} needs at least {self.k} seeds (got {len(self.seeds)})")
        return self


class RollbackSection(_Section):
    primary_suite: Literal["test", "heldout"] = Field("test", description="the suite whose improvement is claimed")
    min_improvement: float = Field(0.0, ge=-1, le=1, description="ship needs the primary interval's lower bound above this (and the exact test to reject)")
    max_drop: float = Field(0.05, ge=0, le=1, description="no suite may drop more pass@1 than this")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="error rate: each one-sided check is at alpha/2, intervals at level 1 - alpha")


class DecisionsSection(_Section):
    approve_split: bool = Field(False, description="with --yes, approve (freeze) the split")
    approve_rollouts: bool = Field(False, description="with --yes, start the paid rollouts after the pilot")
    export_pairs: bool = Field(False, description="with --yes, export the filtered pairs")
    launch_training: bool = Field(False, description="with --yes, launch the DPO job")
    run_eval: bool = Field(False, description="with --yes, start endpoints and run the eval")


class Plan(_Section):
    campaign: CampaignSection
    backend: BackendSection = BackendSection()
    models: ModelsSection
    suites: SuitesSection
    split: SplitSection = SplitSection()
    rollouts: RolloutsSection = RolloutsSection()
    budget: BudgetSection
    pairs: PairsSection = PairsSection()
    training: TrainingSection
    eval: EvalSection
    rollback: RollbackSection = RollbackSection()
    decisions: DecisionsSection = DecisionsSection()

    @field_validator("suites")
    @classmethod
    def _suite_specs(cls, v: SuitesSection) -> SuitesSection:
        for spec in [*v.train_test, *v.heldout]:
            kind = spec.split(":", 1)[0]
            if kind not in SUITE_KINDS or (kind != "fixtures" and ":" not in spec):
                raise ValueError(f"suite {spec!r} must be fixtures or KIND:PATH with KIND one of {', '.join(SUITE_KINDS[1:])}")
        return v

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


_SECRET_KEYS = {"api_key", "apikey", "together_api_key", "token", "secret"}


def _find_secret(obj: Any, where: str = "") -> str | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{where}.{k}" if where else k
            if k.lower() in _SECRET_KEYS:
                return path
            if found := _find_secret(v, path):
                return found
    return None


def _error_line(path: Path, exc: ValidationError, model: type[BaseModel] = Plan) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "plan"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(model, err["loc"][:-1])
        return f"{path}: {loc}: unknown field (allowed: {', '.join(allowed)})"
    if err["type"] == "missing":
        return f"{path}: {loc}: required field is missing"
    got = err.get("input")
    shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
    return f"{path}: {loc}: {err['msg']}{shown}"


def _allowed_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        model = ann
    return sorted(model.model_fields)


def resolve_suite(spec: str, base_dir: Path) -> str:
    """Make a suite's path absolute (relative to the plan file) and check that it exists."""
    if spec == "fixtures":
        return spec
    kind, raw = spec.split(":", 1)
    path = Path(os.path.expanduser(raw))
    path = path if path.is_absolute() else (base_dir / path).resolve()
    if not path.exists():
        raise InputError(f"suite {spec}: {path} does not exist")
    return f"{kind}:{path}"


def known_models(prices: Any) -> set[str]:
    return set(prices.serverless) | set(prices.dedicated) | set(prices.training)


def load_plan(path: str | os.PathLike[str], *, prices: Any | None = None, offers: Any | None = None,
              check_models: bool = True) -> Plan:
    """Read and validate a plan; raise InputError with one line naming the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the plan ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    if secret := _find_secret(raw):
        raise InputError(f"{path}: {secret}: API keys never go in a plan file; set TOGETHER_API_KEY or the config file")
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_error_line(path, exc)) from None
    base_dir = path.resolve().parent
    resolved: dict[str, list[str]] = {}
    for field in ("train_test", "heldout"):
        resolved[field] = []
        for i, spec in enumerate(getattr(plan.suites, field)):
            try:
                resolved[field].append(resolve_suite(spec, base_dir))
            except InputError as exc:
                raise InputError(f"{path}: suites.{field}[{i}]: {exc.message}") from None
    suites = plan.suites.model_copy(update=resolved)
    plan = plan.model_copy(update={"suites": suites})
    if not check_models:
        return plan
    if prices is None:
        from dpo_tui.provider.prices import load_prices

        prices = load_prices()
    if offers is not None:  # the catalogue decides each model's serving (provider/offers.py)
        from dpo_tui.provider.offers import check_serving

        check_serving(plan, offers, str(path))
    _check_models(path, plan, prices)
    return plan


def _check_models(path: Path, plan: Plan, prices: Any) -> None:
    known = known_models(prices) | set(plan.budget.prices)
    for field, model in (("models.generator", plan.models.generator), ("models.policy_base", plan.models.policy_base),
                         ("models.eval_base", plan.models.eval_base)):
        if model is not None and model not in known:
            raise InputError(f"{path}: {field}: unknown model {model!r} (known: {', '.join(sorted(known))}; "
                             f"or give its price under [budget.prices])")
    gen = plan.models.generator
    if plan.models.generator_serving == "serverless" and gen not in prices.serverless and gen not in plan.budget.prices:
        hint = (f'; it is served on dedicated endpoints: set models.generator_serving = "dedicated"'
                if gen in prices.dedicated else "")
        raise InputError(f"{path}: models.generator_serving: {gen} has no serverless price (price table of "
                         f"{prices.date}){hint}, or give its price under [budget.prices]")
    if plan.models.generator_serving == "dedicated" and plan.models.generator_hardware is None \
            and gen not in prices.dedicated:
        raise InputError(f"{path}: models.generator_hardware: no dedicated hardware known for {gen}; name one "
                         f"(e.g. {', '.join(sorted(prices.instances))})")
    if plan.models.policy_base not in prices.training:
        raise InputError(f"{path}: models.policy_base: no DPO training price for {plan.models.policy_base!r} "
                         f"(fine-tunable here: {', '.join(sorted(prices.training)) or 'none'})")


def load_checked_plan(path: str | os.PathLike[str], *, prices_path: str | os.PathLike[str] | None = None,
                      settings: Any | None = None) -> tuple[Plan, Any, Any]:
    """(plan, prices, offers): the plan checked against the catalogue its backend offers
    (provider/offers.py) and priced from it; a price table given (`--prices`) overrides it."""
    from dpo_tui.provider.offers import offer_prices, plan_offers
    from dpo_tui.provider.prices import load_prices

    plan = load_plan(path, check_models=False)
    offers = plan_offers(plan, settings)
    prices = load_prices(prices_path) if prices_path is not None else offer_prices(offers)
    return load_plan(path, prices=prices, offers=offers), prices, offers


def demo_plan_path() -> Path:
    return fixtures_dir() / "plans" / "demo.toml"
