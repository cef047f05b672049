"""DPO on the simulated policy: learn the edit-feature weights from preference pairs.

For each pair, the prompt's programs and failure output are parsed as a chat request
would be; the chosen and the rejected answer are each diffed against the prompt's
programs to recover which catalogued edit produced them (or an `other` edit on the
changed line). Under the linear-softmax policy the log-ratio of chosen to rejected is
s * w . (f_c - f_r), where s is the sharpness, so the DPO loss against the frozen
reference w_ref is

    L = -log sigmoid(beta * s * (w - w_ref) . (f_c - f_r))

A reference-free (SimPO) job drops the w_ref term and asks for a target margin gamma:
L = -log sigmoid(beta * s * w . (f_c - f_r) - gamma). Every step records what Together's
`list_metrics` reports: the loss, the reward accuracy (share of the batch whose implicit
reward margin is positive), the KL of the policy's choice between the two answers from the
reference's, the learning rate and the gradient norm; with validation pairs, the eval loss
at `n_evals` evenly spaced steps.

Minibatch gradient steps use the job's epochs, batch size and learning rate (scaled by
LR_SCALE, since a real job's 1e-5 is for billions of weights, not a few dozen). Each pair's
gradient is beta * s * sigmoid(-margin) * (f_c - f_r): it fades as the pair is learned, so
the weights saturate with the number of pairs. Test-verified pairs mostly prefer the
reference fix, so DPO raises `fix` (how much the model trusts the fix it perceives); it
cannot raise what the model perceives (the profile's `insight`), which caps the gain.
Label-swapped pairs lower `fix`; random labels leave it unmoved on average.
"""

from __future__ import annotations

import difflib
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from dpo_tui.sim.mutations import Edit, candidates, normalize
from dpo_tui.sim.policy import FENCE_RE, Context, content_text, features, parse_context
from dpo_tui.sim.references import References, code_key

LR_SCALE = 5.0e4


@dataclass
class TrainReport:
    pairs: int
    used: int
    steps: int
    losses: list[float]
    weight_change: float
    metrics: list[dict[str, float]] = field(default_factory=list)  # one per step, plus eval rows


def _answer_program(msg_list: Any) -> str | None:
    if not isinstance(msg_list, list) or not msg_list:
        return None
    blocks = FENCE_RE.findall(content_text(msg_list[0].get("content")))
    return (blocks[-1] if blocks[-1].endswith("\n") else blocks[-1] + "\n") if blocks else None


def _edit_features(ctx: Context, program: str) -> dict[str, float] | None:
    key = normalize(program)
    bases = [(ctx.latest, False)] + ([(ctx.original, True)] if ctx.original != ctx.latest else [])
    for base, restart in bases:
        if base is None:
            continue
        for e in candidates(base):
            if normalize(e.program) == key:
                return features(e, ctx.failure, restart, base)
    if ctx.latest is None:
        return None
    # not one catalogued edit: an `other` edit on the first changed line
    a, b = ctx.latest.splitlines(), program.splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        if tag != "equal":
            old = a[i1] if i1 < len(a) else ""
            new = b[j1] if j1 < len(b) else ""
            return features(Edit("other", i1 + 1, old, new, program), ctx.failure, False, ctx.latest)
    return None


def pair_delta(pair: Mapping[str, Any], refs: References | None = None) -> dict[str, float] | None:
    """f(chosen) - f(rejected) for one preference line, or None when it cannot be read. An
    answer that is the task's reference fix carries `fix` = 1 (as when the model sees it)."""
    ctx = parse_context(pair["input"]["messages"])
    if not ctx.is_repair:
        return None
    chosen, rejected = _answer_program(pair["preferred_output"]), _answer_program(pair["non_preferred_output"])
    if chosen is None or rejected is None:
        return None
    fc, fr = _edit_features(ctx, chosen), _edit_features(ctx, rejected)
    if fc is None or fr is None:
        return None
    ref = refs.lookup(ctx.original) if refs is not None else None
    if ref is not None:
        fc["fix"], fr["fix"] = float(code_key(chosen) == ref.key), float(code_key(rejected) == ref.key)
    keys = set(fc) | set(fr)
    delta = {k: fc.get(k, 0.0) - fr.get(k, 0.0) for k in keys}
    return {k: v for k, v in delta.items() if v}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -30 else 0.0


def _choice_kl(policy_logit: float, ref_logit: float) -> float:
    """KL(policy || reference) of the choice between the two answers (Bernoulli logits)."""
    p, q = min(max(_sigmoid(policy_logit), 1e-12), 1 - 1e-12), min(max(_sigmoid(ref_logit), 1e-12), 1 - 1e-12)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _loss(margin: float) -> float:
    return math.log1p(math.exp(-margin)) if margin > -30 else -margin


def train_dpo(params: Mapping[str, Any], pairs: list[Mapping[str, Any]], *, beta: float, epochs: int,
              learning_rate: float, batch_size: int, seed: int = 0,
              on_epoch: Callable[[int, float], None] | None = None, reference_free: bool = False,
              gamma: float = 0.0, validation: list[Mapping[str, Any]] | None = None,
              n_evals: int = 0, refs: References | None = None) -> tuple[dict[str, Any], TrainReport]:
    ref = dict(params["weights"])
    w = dict(ref)
    s = float(params.get("sharpness", 1.0)) / 0.7
    deltas = [d for d in (pair_delta(p, refs) for p in pairs) if d is not None]
    val = [d for d in (pair_delta(p, refs) for p in validation or []) if d is not None]
    rng = random.Random(seed)
    lr = learning_rate * LR_SCALE
    losses, steps, metrics = [], 0, []
    beta = beta if beta > 0 else 0.1
    anchor = {} if reference_free else ref  # SimPO: no reference term

    def margin_of(d: Mapping[str, float]) -> float:
        return beta * s * sum((w.get(k, 0.0) - anchor.get(k, 0.0)) * v for k, v in d.items()) - gamma

    per_epoch = -(-len(deltas) // max(1, batch_size))
    total_steps = max(1, epochs) * per_epoch
    eval_at = {round(total_steps * (i + 1) / n_evals) for i in range(n_evals)} if val and n_evals > 0 else set()
    for epoch in range(max(1, epochs)):
        order = list(range(len(deltas)))
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), max(1, batch_size)):
            batch = [deltas[i] for i in order[start:start + batch_size]]
            grad: dict[str, float] = {}
            step_loss = right = kl = 0.0
            for d in batch:
                margin = margin_of(d)
                step_loss += _loss(margin)
                right += margin > 0
                kl += _choice_kl(s * sum(w.get(k, 0.0) * v for k, v in d.items()),
                                 s * sum(ref.get(k, 0.0) * v for k, v in d.items()))
                coef = beta * s / (1.0 + math.exp(margin)) if margin > -30 else beta * s
                for k, v in d.items():
                    grad[k] = grad.get(k, 0.0) + coef * v / len(batch)
            total += step_loss
            for k, g in grad.items():
                w[k] = w.get(k, 0.0) + lr * g
            steps += 1
            metrics.append({"train/global_step": float(steps), "train/epoch": epoch + (start + len(batch)) / len(order),
                            "train/loss": step_loss / len(batch), "train/rewards/accuracies": right / len(batch),
                            "train/kl": kl / len(batch), "train/learning_rate": learning_rate,
                            "train/grad_norm": math.sqrt(sum(g * g for g in grad.values()))})
            if steps in eval_at:
                metrics.append({"train/global_step": float(steps),
                                "eval/loss": sum(_loss(margin_of(d)) for d in val) / len(val)})
        losses.append(total / max(1, len(deltas)))
        if on_epoch:
            on_epoch(epoch + 1, losses[-1])
    change = math.sqrt(sum((w.get(k, 0.0) - ref.get(k, 0.0)) ** 2 for k in set(w) | set(ref)))
    out = dict(params)
    out["weights"] = w
    return out, TrainReport(len(pairs), len(deltas), steps, losses, change, metrics)
