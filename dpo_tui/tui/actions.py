"""The operator's actions: each asks first when it costs money or cannot be undone, then
goes through the same service as the headless runner (via the session), off the UI thread.

A mixin of the app: it uses the app's `act` (a worker per action), `_stage_work` (a worker
running stages), `push_screen` and `notify`, and reads the state under the session's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpo_tui.errors import DpoTuiError
from dpo_tui.tui.screens.modals import CapScreen, ConfirmScreen, NewRunScreen, OverrideScreen, ReasonScreen

if TYPE_CHECKING:
    from dpo_tui.tui.session import Session


STAGE_WORD = {"rollouts": "paid"}  # a rollout stage as the operator says it (pilot, paid, eval)


class OperatorActions:
    """`action_*` methods bound to keys on the panes and listed in the command palette."""

    session: Session
    engine: object | None
    working: str | None

    def action_record_estimate(self) -> None:
        budget, rollouts = self.pane("budget").edits()  # type: ignore[attr-defined]
        self.act("record estimate", lambda: self.session.record_what_if(budget, rollouts), "estimate recorded")

    def fits_cap(self, estimate_usd: float | None, what: str, cap_usd: float, spend_usd: float) -> bool:
        """True when `what` fits what the cap leaves; else the operator is asked to raise the
        cap first (the stage would be refused before it started)."""
        why = self.session.refused_by_cap(estimate_usd, what, cap_usd, spend_usd)
        if why is None:
            return True
        self.action_set_cap(preface=f"{why}\n\n")
        return False

    def action_set_cap(self, preface: str = "") -> None:
        if self.session.readonly:
            self.notify("read-only: actions are disabled (opened with --readonly)", severity="warning")
            return
        c = self.session.cap_state()
        cap = f"${c['cap_usd']:.2f}" if c["cap_usd"] is not None else "none"
        est = f"${c['estimate_usd']:.2f}" if c["estimate_usd"] is not None else "none logged"
        says = f"the plan says ${c['plan_cap_usd']:.2f}" if c["plan_cap_usd"] is not None else "no plan yet"
        body = preface + (f"Cap now {cap} (set by {c['set_by'] or 'the plan'}); {says}.\n"
                f"Spent ${c['spend_usd']:.3f}; latest estimate {est}.\n"
                "Every later call is held against the new cap (one below the spend stops the next call). "
                "It holds across reruns until the plan's own cap is changed.")

        def got(answer: tuple[str, str] | None) -> None:
            if answer:
                amount, reason = answer
                self.act("set cap", lambda: self.session.set_cap(amount, reason),
                         f"budget cap set to ${self.session.parse_cap(amount):.2f}")
        self.push_screen(CapScreen(body, f"{c['cap_usd']:g}" if c["cap_usd"] else "", check=self.session.parse_cap,
                                   check_reason=self.session.check_cap_reason), got)

    def action_propose_split(self) -> None:
        self.act("propose split", self.session.propose_split, "split proposed")

    def _selected_task(self) -> str | None:
        tid = self.pane("split").selected_task()  # type: ignore[attr-defined]
        if tid is None:
            self.notify("no task selected", severity="warning")
        return tid

    def action_move_task(self) -> None:
        tid = self._selected_task()
        if tid is None:
            return
        to = self.session.other_side(tid)
        self.act("move task", lambda: self.session.move(tid, to, reason="moved in the TUI"), f"{tid} moved to {to}")

    def action_exclude_task(self) -> None:
        tid = self._selected_task()
        if tid is None:
            return

        def got(reason: str | None) -> None:
            if reason:
                self.act("exclude task", lambda: self.session.exclude(tid, reason), f"{tid} excluded")
        self.push_screen(ReasonScreen(f"Exclude {tid}", "Why is this task excluded from both train and test? "
                                      "The reason is logged with your name."), got)

    def action_approve_split(self) -> None:
        try:
            s = self.session.split_to_approve()
        except DpoTuiError as exc:
            self.notify(f"{exc.console_text} (P on Split)", severity="warning")
            return
        split, findings = s.split, len(s.findings)
        if s.frozen:
            self.notify(self.session.already_frozen(s))
            return
        body = (f"This freezes the split:\n  {len(split.train)} train tasks, {len(split.test)} test tasks, "
                f"{len(split.excluded)} excluded\n  hash {split.hash()[:16]}…\n  {findings} open leakage findings\n\n"
                "Rollouts and pairs use the frozen split. Changing it afterwards needs an explicit, "
                "reasoned unfreeze decision.")

        def answer(yes: bool | None) -> None:
            if yes:
                self.act("approve split", self.session.approve_split, "split approved and frozen")
        self.push_screen(ConfirmScreen("Approve the split?", body, yes="Approve"), answer)

    def action_unfreeze_split(self) -> None:
        try:
            fhash = self.session.frozen_split().frozen_hash
        except DpoTuiError as exc:
            self.notify(exc.console_text, severity="warning")
            return
        done = self.session.built_on_split()
        rollouts = ", ".join(f"{n} {STAGE_WORD.get(k, k)}" for k, n in done["rollouts"].items())
        body = (f"Unfreeze split {fhash[:12]} so tasks can be moved or excluded again.\n"
                f"Done on it so far: rollouts {rollouts or 'none'}, "
                f"pairs {'built' if done['pairs_built'] else 'not built'}{', exported' if done['exported'] else ''}, "
                f"training runs {done['training_runs']}; they stay in "
                "the log tied to this hash. Approving again freezes the new split.\nWhy unfreeze?")

        def got(reason: str | None) -> None:
            if reason:
                self.act("unfreeze split", lambda: self.session.unfreeze_split(reason), "split unfrozen")
        self.push_screen(ReasonScreen("Unfreeze the split?", body, ok="Unfreeze"), got)

    def action_start_rollouts(self) -> None:
        if self.working is not None:
            self.notify(f"{self.working} is already running", severity="warning")
            return
        try:
            p = self.session.rollout_plan()
        except DpoTuiError as exc:
            self.notify(exc.console_text, severity="error")
            return
        money = f"Spend so far ${p['spend_usd']:.3f} of the ${p['cap_usd']:.2f} cap (remaining " \
                f"${p['cap_usd'] - p['spend_usd']:.3f}); the cap stops every call before it is crossed."
        if p["phase"] == "pilot":
            est = f"${p['pilot_usd']:.3f}" if p["pilot_usd"] is not None else "unknown (no estimate logged)"
            body = (f"Run the pilot: {p['pilot_rollouts']} rollouts, estimated {est} "
                    f"(the rollout stage: {p['total']} rollouts, ${p['stage_usd'] or 0:.3f} uncalibrated).\n"
                    f"Its measured costs calibrate the estimate before the rest.\n\n{self.session.power_text()}"
                    f"\n\n{money}")
            decision, estimate, title = "run_pilot", p["pilot_usd"], "Run the pilot?"
        elif p["approved"]:
            if p["finished"] >= p["total"]:
                self.notify(f"all {p['total']} rollouts have finished")
                return
            self._stage_work("rollouts", "rollouts")
            return
        else:
            left = p["total"] - p["pilot_rollouts"]
            more = (f"up to {left} more (of {p['total']}), allocated in rounds by expected pair yield"
                    if p.get("allocation") == "yield" else f"{left} more (of {p['total']})")
            body = (f"Start the rollouts: {more}, estimated ${p['stage_usd'] or 0:.3f} for "
                    f"the stage ({'calibrated by the pilot' if p['calibrated'] else 'uncalibrated'}).\n\n"
                    f"{self.session.power_text()}\n\n{money}")
            decision, estimate, title = "approve_rollouts", p["stage_usd"], "Start the rollouts?"
        if not self.fits_cap(p["hold_usd"], title[:-1].replace("Run the", "The").replace("Start the", "The"),
                             p["cap_usd"], p["spend_usd"]):
            return

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.session.approve(decision, "rollouts", reason=f"confirmed in the TUI ({title[:-1].lower()})",
                                     estimate_usd=estimate)
            except DpoTuiError as exc:
                self.notify(exc.console_text, severity="error")
                return
            self._stage_work("pilot" if decision == "run_pilot" else "rollouts", "rollouts")
        self.push_screen(ConfirmScreen(title, body, yes="Start"), answer)

    def _engine_note(self, text: str) -> None:
        self.act("note", lambda: self.session.note(text, "rollouts"))

    def action_pause_resume(self) -> None:
        if self.engine is None:
            self.notify("no rollouts are running", severity="warning")
            return
        if self.engine.progress.status == "paused":
            self.engine.resume()
            self._engine_note("rollouts resumed by the operator")
            self.notify("resumed")
        else:
            self.engine.pause()
            self._engine_note("rollouts paused by the operator (calls in flight finish)")
            self.notify("paused: calls in flight finish, no new steps start")

    def action_cancel_rollouts(self) -> None:
        if self.engine is None:
            self.notify("no rollouts are running", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes and self.engine is not None:
                self.engine.cancel()
                self._engine_note("rollouts cancelled by the operator; unfinished rollouts resume on the next start")
        self.push_screen(ConfirmScreen("Cancel the rollouts?", "Running rollouts stop at their next step; finished "
                                       "ones are kept, unfinished ones resume next time.", yes="Cancel them"), answer)

    def action_concurrency(self, delta: int) -> None:
        if self.engine is None:
            self.notify("no rollouts are running", severity="warning")
            return
        n = max(1, self.engine.concurrency + delta)
        self.engine.set_concurrency(n)
        self._engine_note(f"rollout concurrency set to {n} by the operator")
        self.notify(f"concurrency {n}")

    def action_build_pairs(self) -> None:
        b = self.session.build_plan()
        if b["rollouts"]["unfinished"] is None:
            self.act("build pairs", self.session.build_pairs, "pairs built")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.act("build pairs", self.session.build_pairs, "pairs built")
        body = (f"Warning: {b['rollouts']['unfinished']}.\nBuilding now uses {b['rollouts']['finished']} of the "
                f"{b['rollouts']['planned']} planned rollouts; the rest can still finish (r on Rollouts) and the "
                "pairs be built again.")
        self.push_screen(ConfirmScreen("Build pairs from unfinished rollouts?", body, yes="Build anyway"), answer)

    def action_apply_pair_thresholds(self) -> None:
        pane = self.pane("pairs")
        margin_s, cap_s = pane.thresholds_typed()  # type: ignore[attr-defined]
        try:
            margin, cap = float(margin_s), int(cap_s)
        except ValueError:
            self.notify("pair thresholds: type a min margin (0..1) and a per-task cap (1 or more) first",
                        severity="warning")
            return

        def got(reason: str | None) -> None:
            if reason:
                self.act("apply pair thresholds", lambda: self.session.set_pair_thresholds(margin, cap, reason),
                         lambda f: f"pair thresholds applied (min margin {margin:g}, per-task cap {cap}): " + (
                             f"{f.get('manual', 0)} pairs kept" if f else "the next build uses them"),
                         then=pane.show_thresholds)  # type: ignore[attr-defined]
        body = (f"Apply min margin {margin:g} and per-task cap {cap} as your decision (logged with your name and "
                "reason)? The funnel is rebuilt with them now and every later build uses them; an export from "
                "before becomes stale.")
        self.push_screen(ReasonScreen("Apply the pair thresholds?", body, ok="Apply"), got)

    def action_pair_decision(self, decision: str) -> None:
        pid = self.pane("pairs").selected_pair()  # type: ignore[attr-defined]
        if pid is None:
            self.notify("no pair selected", severity="warning")
            return
        self.act(f"{decision} pair", lambda: self.session.decide_pair(pid, decision), f"pair {pid}: {decision}")

    def action_export_pairs(self, then_train: bool = False) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.act("export pairs", self.session.export_pairs,
                         lambda x: f"{x['pairs']} pairs exported:\n" + "\n".join(self.session.exported_files(x)),
                         then=self.action_start_training if then_train else None)
        x = self.session.export_plan()
        if x is None:
            self.notify("no pairs built yet (b builds them)", severity="warning")
            return
        kept, stale = x["kept"], x["stale"]
        body = (f"Writes {kept} kept pairs as Together preference JSONL, TRL JSONL and a lineage manifest into "
                f"{x['out_dir']} (beside the campaign file); their sha256 are logged.")
        if x["rollouts"]["unfinished"]:
            body = f"Warning: {x['rollouts']['unfinished']}.\n\n{body}"
        if stale:
            body = f"The export is stale: {stale}.\nTraining never uploads a stale export.\n\n{body}"
        title = "Re-export the pairs?" if stale else "Export the pairs?"
        self.push_screen(ConfirmScreen(title, body, yes="Re-export" if stale else "Export"), answer)

    def action_start_training(self) -> None:
        if self.working is not None:
            self.notify(f"{self.working} is already running", severity="warning")
            return
        try:
            p = self.session.train_plan()
        except DpoTuiError as exc:
            self.notify(exc.console_text, severity="error")
            return
        if p["status"] == "completed":
            self.notify("training has completed")
            return
        from dpo_tui.campaign.state.train import TERMINAL  # (the fold's modules: not on the shell's path)

        if p["status"] in TERMINAL:
            self.notify(f"the job ended {p['status']}; n starts a new run", severity="warning", timeout=10)
            return
        if p["stale"]:  # offer the re-export, never the stale file; training goes on once it is written
            self.action_export_pairs(then_train=True)
            return
        if p["phase"] == "prepare" or p["launched"]:
            self._stage_work("training", "train")  # upload and estimate cost nothing; a launched job is followed
            return
        if not self.fits_cap(p["estimated_usd"], f"Training {p['run_id']}", p["cap_usd"], p["spend_usd"]):
            return
        left = p["cap_usd"] - p["spend_usd"]
        changed = ", ".join(f"{k}={v}" for k, v in p["overrides"].items()) or "the plan's hyperparameters"
        commits = "\n".join(self.session.launch_lines(p["launch"]))
        body = (f"Launch DPO training {p['run_id']} ({changed}).\n{commits}\n"
                f"Together's estimate ${p['estimated_usd']:.4f}.\n"
                f"Spend so far ${p['spend_usd']:.3f} of the ${p['cap_usd']:.2f} cap; ${left:.3f} remains.\n\n"
                f"{self.session.power_text()}")

        def answer(yes: bool | None) -> None:
            if yes:
                self.session.approve(p["decision"], "train", reason="confirmed in the TUI",
                                     estimate_usd=p["estimated_usd"])
                self._stage_work("training", "train")
        self.push_screen(ConfirmScreen("Launch training?", body, yes="Launch"), answer)

    def action_new_run(self) -> None:
        if self.working is not None:
            self.notify(f"{self.working} is running: a new run can start when it is done", severity="warning")
            return
        pc = self.session.plan
        if pc is None or self.session.readonly:
            return
        t = pc.plan.training
        fields = {"dpo_beta": f"{t.dpo_beta:g}", "learning_rate": f"{t.learning_rate:g}", "n_epochs": str(t.n_epochs)}
        body = ("Another DPO run from the same frozen pairs (no rollouts paid again), with its own job, endpoints, "
                "eval and gate. t then uploads and prices it (free), and launches after you confirm the price.")

        def got(answer: tuple[str, dict[str, str]] | None) -> None:
            if not answer:
                return
            run_id, raw = answer
            try:
                self.session.new_run(run_id, raw)
            except DpoTuiError as exc:
                self.notify(exc.console_text, severity="error")
                return
            self.pane("train").sync()  # type: ignore[attr-defined]
            self.notify(f"Train and Eval now act on {run_id}: t prepares it", timeout=6)
        self.push_screen(NewRunScreen(body, self.session.next_run_id(), fields, check=self.session.check_new_run), got)

    def action_cancel_training(self) -> None:
        try:
            self.session.cancellable()
        except DpoTuiError as exc:
            self.notify(exc.console_text, severity="warning")
            return
        run = self.session.training_run()
        body = (f"Cancel DPO job {run['job_id']} ({run['status']})? Together stops it; steps it already ran may "
                "still be billed. A new job needs a new run (dpo-tui train --run-id ...).\nWhy cancel?")

        def got(reason: str | None) -> None:
            if reason:
                self.act("cancel training", lambda: self.session.cancel_training(reason),
                         f"cancel requested for {run['job_id']}")
        self.push_screen(ReasonScreen("Cancel the training job?", body, ok="Cancel job"), got)

    def action_stop_endpoint(self) -> None:
        endpoint_id = self.pane("train").selected_endpoint()  # type: ignore[attr-defined]
        running = {e["endpoint_id"]: e for e in self.session.running_endpoints()}
        if not running:
            self.notify("no endpoint is running", severity="warning")
            return
        ep = running.get(endpoint_id or "") or next(iter(running.values()))
        per_min = ep["price_cents_per_hour"] / 100 / 60
        body = (f"Stop endpoint {ep['endpoint_id']} ({ep['role']}, {ep['instance']}, ${per_min:.4f}/min) and "
                "delete it; its billed minutes are logged."
                + ("\nAn eval is running: its calls to this endpoint will fail." if self.working == "eval" else ""))

        def answer(yes: bool | None) -> None:
            if yes:
                self.act("stop endpoint", lambda: self.session.stop_endpoint(
                    ep["endpoint_id"], "stopped by hand in the console"), f"endpoint {ep['endpoint_id']} stopped")
        self.push_screen(ConfirmScreen("Stop the endpoint?", body, yes="Stop it"), answer)

    def action_start_eval(self) -> None:
        if self.working is not None:
            self.notify(f"{self.working} is already running", severity="warning")
            return
        try:
            p = self.session.eval_plan()
        except DpoTuiError as exc:
            self.notify(exc.console_text, severity="error")
            return
        if p["approved"]:
            self._stage_work("eval", "eval")
            return
        if not self.fits_cap(p["endpoint_usd"], "The eval's endpoint minutes", p["cap_usd"], p["spend_usd"]):
            return
        est = f"${p['endpoint_usd']:.3f}" if p["endpoint_usd"] is not None else "unknown"
        body = (f"Start {p['serving']}, billed per minute and always stopped, and run the "
                f"eval: estimated {est} for ~{p['minutes']:g} minutes each.\nSpend so far ${p['spend_usd']:.3f} of "
                f"the ${p['cap_usd']:.2f} cap.")

        def answer(yes: bool | None) -> None:
            if yes:
                self.session.approve(p["decision"], "eval", reason="confirmed in the TUI",
                                     estimate_usd=p["endpoint_usd"])
                self._stage_work("eval", "eval")
        self.push_screen(ConfirmScreen("Run the eval?", body, yes="Start"), answer)

    def action_override_gate(self) -> None:
        if self.working == "eval":
            self.notify("the eval is running: override its gate when it has decided", severity="warning")
            return
        g = self.session.gate()
        if g is None:
            self.notify("the gate has not decided yet: nothing to override", severity="warning")
            return
        body = (f"Eval {g['run_id']}: the decision now is {g['decision']} (by {g['decided_by']}"
                f"{', an override' if g['overridden'] else ''}).\ncriterion: {g['criterion']}\n"
                f"reason: {g['reason']}\nPick the new decision and write why; it is logged with your name.")

        def got(answer: tuple[str, str] | None) -> None:
            if answer:
                decision, reason = answer
                self.act("override gate", lambda: self.session.override_gate(decision, reason),
                         f"gate overridden: {decision}")
        self.push_screen(OverrideScreen(body, g["choices"], check=self.session.check_override_reason), got)
