"""The command palette's provider: every operator action and every stage, by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, action, help)
ACTIONS = (
    ("Go to Budget", "show_stage('budget')", "the estimate per stage, pilot calibration, cap"),
    ("Go to Split", "show_stage('split')", "tasks, leakage findings, approve"),
    ("Go to Rollouts", "show_stage('rollouts')", "live progress and the engine's controls"),
    ("Go to Pairs", "show_stage('pairs')", "funnel, pair list and diff"),
    ("Go to Train", "show_stage('train')", "the DPO job"),
    ("Go to Eval", "show_stage('eval')", "base against tuned, the gate"),
    ("Go to Log", "show_stage('log')", "events, payloads, chain verification"),
    ("Record the edited budget estimate", "record_estimate", "logged as your estimate"),
    ("Set the budget cap", "set_cap", "asks the amount and a reason; logged as yours"),
    ("Propose the split", "propose_split", "the plan's seeded split with leakage findings"),
    ("Move the selected task to the other side", "move_task", "train to test or back; logged"),
    ("Exclude the selected task", "exclude_task", "asks for a reason"),
    ("Approve (freeze) the split", "approve_split", "asks first; logs the split's hash"),
    ("Unfreeze the split", "unfreeze_split", "asks for a reason; what was built on it is shown"),
    ("Start the pilot / rollouts", "start_rollouts", "asks first, showing the estimated cost"),
    ("Pause or resume rollouts", "pause_resume", "the running engine"),
    ("Cancel rollouts", "cancel_rollouts", "unfinished rollouts resume later"),
    ("Concurrency up", "concurrency(1)", "one more rollout at a time"),
    ("Concurrency down", "concurrency(-1)", "one fewer rollout at a time"),
    ("Rollouts per task", "rollouts_per_task", "switch the Rollouts table between rollouts and tasks"),
    ("Show the selected rollout's conversation", "open_selected_rollout", "prompt, replies, test output"),
    ("Build pairs", "build_pairs", "from the finished rollouts, through the filters"),
    ("Accept the selected pair", "pair_decision('accept')", "kept whatever the filters say; logged"),
    ("Reject the selected pair", "pair_decision('reject')", "never trained on; logged"),
    ("Apply the pair thresholds", "apply_pair_thresholds", "the min margin and per-task cap typed on Pairs; logged"),
    ("Export pairs", "export_pairs", "Together and TRL JSONL with a manifest"),
    ("Prepare / launch DPO training", "start_training", "upload and price estimate, then launch (asks first)"),
    ("Cancel the training job", "cancel_training", "asks for a reason; the job is cancelled at Together"),
    ("Start a new training run", "new_run", "another run id and hyperparameters from the same pairs"),
    ("Stop a dedicated endpoint", "stop_endpoint", "the selected one on Train (asks first)"),
    ("Run the eval", "start_eval", "dedicated endpoints, base against tuned (asks first)"),
    ("Override the gate", "override_gate", "another decision, with a written reason; marked in the header"),
    ("Verify the hash chain", "verify_chain", "audit the whole log"),
    ("Filter the log", "log_filter", "type:… actor:… stage:… text"),
    ("Show every key of this pane", "show_keys", "and the console's"),
    ("Show the notices", "show_notices", "everything the console said, with time and severity"),
    ("Quit", "quit_app", "asks first if work is running"),
)


def action_keys(app) -> dict[str, str]:  # noqa: ANN001 - DpoApp
    """Each action's key as the footer shows it, with the pane it works on (`Rollouts r`)."""
    from dpo_tui.tui.app import STAGES

    keys: dict[str, str] = {}
    for i, (stage, label, cls) in enumerate(STAGES):
        keys[f"show_stage('{stage}')"] = str(i + 1)
        for b in cls.BINDINGS:
            keys.setdefault(b.action.removeprefix("app."), f"{label.split()[1]} {app.get_key_display(b)}")
    for b in app.BINDINGS:
        keys.setdefault(b.action, app.get_key_display(b))
    keys.setdefault("log_filter", keys.get("focus_filter", ""))
    keys.setdefault("verify_chain", keys.get("verify", ""))
    keys.setdefault("open_selected_rollout", keys.get("open_rollout", ""))
    keys.setdefault("rollouts_per_task", keys.get("toggle_view", ""))
    return keys


class ActionsProvider(Provider):
    def _run(self, action: str) -> None:
        self.app.call_later(self.app.run_action, action)

    def _offered(self) -> list[tuple[str, str, str]]:
        """The actions the app would run now (--readonly offers none that write), each help
        line ending with the action's key."""
        keys = action_keys(self.app)
        return [(title, action, f"{help_}   [key: {keys[action]}]" if keys.get(action) else help_)
                for title, action, help_ in ACTIONS if self.app.check_action(action.split("(")[0], ()) is not False]

    async def discover(self) -> Hits:
        for title, action, help_ in self._offered():
            yield DiscoveryHit(title, partial(self._run, action), help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_ in self._offered():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action), help=help_)
