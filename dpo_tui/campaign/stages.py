"""The campaign's stages, in order (a module of its own so the CLI can offer them without
importing the runner, the SDK and the store)."""

STAGES = ("budget", "split", "rollouts", "pairs", "train", "eval")

# the stage an event belongs to when its payload names none, by its type's first part
_BY_FAMILY = {"budget": "budget", "prices": "budget", "plan": "budget", "split": "split", "tasks": "split",
              "task": "split", "rollout": "rollouts", "rollouts": "rollouts", "pairs": "pairs", "train": "train",
              "training": "train", "endpoint": "eval", "eval": "eval"}
_TYPE_STAGE = {"decision.gate": "eval", "decision.gate_overridden": "eval"}


def event_stage(type_: str, payload: dict | None) -> str | None:
    """The stage an event belongs to: the payload's own `stage` (calls, rollouts and decisions
    carry one; the pilot's are "pilot"), else its type's (`split.approved` -> split); None for
    campaign-wide events (the chain's checkpoints, notes, the campaign's creation)."""
    stage = (payload or {}).get("stage")
    if isinstance(stage, str) and stage:
        return stage
    return _TYPE_STAGE.get(type_) or _BY_FAMILY.get(type_.split(".", 1)[0])
