"""`dpo-tui report`: the auditor's questions answered from the log alone.

Spend by stage against the estimate, every decision with actor and reason, the frozen
split and leakage findings, the pair funnel, the lineage (export sha256 -> file -> job ->
model -> endpoints), eval tables with intervals, and the gate's verdict. Built as a list
of blocks (headings, paragraphs, tables) rendered to Markdown or HTML."""

from __future__ import annotations

import html
import os
from typing import Any

from dpo_tui.campaign.state.pairs import ordered_funnel
from dpo_tui.events import checkpoint as checkpoints
from dpo_tui.events.anchor import anchor_line, make_anchor
from dpo_tui.events.audit import AuditReport, audit
from dpo_tui.events.campaign import Campaign
from dpo_tui.events.store import open_store

Block = tuple[str, Any]  # ("h", text) | ("p", text) | ("table", (header, rows))

DECISION_TYPES = ("decision.recorded", "decision.gate", "decision.gate_overridden", "split.approved",
                  "split.unfrozen", "split.task_moved", "split.task_excluded", "pairs.decided",
                  "train.cancel_requested", "budget.cap_set")


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:.4f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def build_for(path: str | os.PathLike[str]) -> list[Block]:
    """The report of the campaign file at `path` in one pass over the log: a clean audit's own
    fold is the state a Campaign would fold (same events, same fold); otherwise the Campaign
    folds (and refuses a broken chain) as before."""
    store = open_store(path, readonly=True)
    try:
        rep = audit(store, key=checkpoints.load_key())
        campaign = Campaign(store, state=rep.state) if rep.ok else Campaign(store)
    except BaseException:
        store.close()
        raise
    with campaign:
        return build(campaign, rep)


def build(campaign: Campaign, rep: AuditReport | None = None) -> list[Block]:
    """The report's blocks; `rep`: this log's audit, when the caller has run it already."""
    s = campaign.state.to_json()
    key = checkpoints.load_key()  # read, never created: a report appends nothing
    rep = rep if rep is not None else audit(campaign.store, key=key)
    simulated = s["plan"]["backend"] == "simulated"
    blocks: list[Block] = [("h", f"Campaign report: {s['campaign']['name']}")]
    keyed = (f"keyed ({rep.checkpoints.verified} checkpoints verified under key {rep.checkpoints.key_id})"
             if rep.keyed else "not keyed: a rewritten and re-hashed history cannot be ruled out")
    blocks.append(("p", f"Campaign {s['campaign']['id']}, created {s['campaign']['created_at']} by "
                        f"{s['campaign']['created_by']}. {s['events']} events, head hash {s['head_hash']}. "
                        f"Audit: {'ok' if rep.ok else f'FAILED at seq {rep.first_bad_seq}'}, {keyed}. "
                        f"Plan hash {s['plan']['hash']}."))
    blocks.append(("p", "Anchor (keep it elsewhere; `dpo-tui audit --anchor FILE` checks the log still holds "
                        "this prefix): " + anchor_line(make_anchor(campaign.store, key))))
    if simulated:
        blocks.append(("p", "Backend: SIMULATED (the embedded Together simulator). Every figure below comes from "
                            "the simulator, not from Together."))
    blocks += _spend(s) + _decisions(campaign) + _split(s, campaign) + _pairs(s) + _lineage(s) + _training(s) + _eval(s)
    blocks += _looks(campaign, s, simulated)
    return blocks


def _looks(campaign: Campaign, s: dict, simulated: bool) -> list[Block]:
    """A sequential eval's looks: each one's statistic against its boundary, where it stopped,
    the samples it skipped and what they would have cost."""
    from dpo_tui.campaign.sequential_eval import run_summary, summary_text

    looks = s["eval"].get("looks") or []
    summary = run_summary(campaign.state, s["eval"].get("run_id"))
    if not looks or summary is None:
        return []
    rows = [[str(lk["look"]), f"{lk['tasks_seen']}/{lk['tasks_planned']}", f"{lk['samples_seen']}",
             f"{lk['statistic']['delta']:+.1%}", f"{lk['statistic']['p_improve']:.4f}",
             f"{lk['statistic']['p_worse']:.4f}", f"{lk['one_sided_alpha']:.4f}", lk["decision"]] for lk in looks]
    return [("h3", "Sequential eval: the gate's looks"),
            ("table", (["look", "tasks seen", "samples", "delta", "p improve", "p worse", "boundary (one-sided alpha)",
                        "decision"], rows)),
            ("p", summary_text(summary, simulated) + ".")]


def _spend(s: dict) -> list[Block]:
    est = (s["budget"] or {}).get("estimate") or {}
    cal = (s["budget"] or {}).get("calibrated") or {}
    rows = []
    for stage in ("rollouts", "training", "eval", "endpoint"):
        e, c = (est.get("by_stage") or {}).get(stage, {}), (cal.get("by_stage") or {}).get(stage, {})
        rows.append([stage, _usd(e.get("usd")), _usd(c.get("usd")), _usd(s["spend"]["by_stage"].get(stage, 0.0))])
    rows.append(["total", _usd(est.get("total_usd")), _usd(cal.get("total_usd")), _usd(s["spend"]["total_usd"])])
    calls = s["calls"]
    cap = (s["budget"] or {}).get("cap_usd")
    notes: list[Block] = []
    if cap is not None and s["spend"]["total_usd"] > cap + 1e-6:
        notes.append(("p", f"WARNING: spend {_usd(s['spend']['total_usd'])} is above the cap {_usd(cap)}."))
    after: list[Block] = []
    gen = [e for e in s["endpoint"]["all"] if e.get("role") == "generator"]
    if gen:
        minutes, usd = sum(e.get("minutes") or 0 for e in gen), sum(e.get("cost_usd") or 0.0 for e in gen)
        after.append(("p", f"The generator ran on a dedicated endpoint: the rollouts row is its {minutes} billed "
                           f"minute(s), {_usd(usd)} ({len(gen)} start(s)); its calls cost $0 per token."))
    for r in (s["budget"] or {}).get("refused") or []:
        notes.append(("p", f"The cap refused {r['what']} ({r['stage']}): estimated {_usd(r['estimate_usd'])}, "
                           f"{_usd(r['remaining_usd'])} of the cap {_usd(r['cap_usd'])} left."))
    return notes + [("h2", "Spend against the estimate"),
            ("table", (["stage", "estimate", "pilot-calibrated", "actual"], rows)),
            ("p", f"Cap {_usd(s['budget'].get('cap_usd'))}. Calls: {calls['completed']} completed, {calls['failed']} "
                  f"failed, {calls['orphaned']} orphaned (possibly billed: {_usd(calls['orphaned_usd'])} kept in spend), "
                  f"{calls['failed_attempts']} failed attempts retried.")] + after


def _decisions(campaign: Campaign) -> list[Block]:
    rows = []
    for e in campaign.store.read(verify=False, types=DECISION_TYPES):  # the type index: not every payload
        if e.type in DECISION_TYPES:
            p = e.payload
            what = p.get("decision") or p.get("to") or p.get("hash", "")[:12] or p.get("cap_usd", "")
            detail = p.get("reason") or p.get("task_id") or p.get("pair_id") or ""
            rows.append([str(e.seq), e.ts, e.type, e.actor, str(what), str(detail)[:120]])
    return [("h2", "Decisions"), ("table", (["seq", "time (UTC)", "type", "actor", "decision", "reason / subject"], rows))]


def _split(s: dict, campaign: Campaign) -> list[Block]:
    sp = s["split"]
    blocks: list[Block] = [("h2", "Split"),
                           ("p", f"{'Frozen' if sp['frozen'] else 'NOT frozen'} (hash {sp['frozen_hash']}): "
                                 f"{len(sp['train'])} train, {len(sp['test'])} test, {len(sp['excluded'])} excluded.")]
    blocks.append(("p", "Train: " + ", ".join(sp["train"])))
    blocks.append(("p", "Test: " + ", ".join(sp["test"])))
    if sp["excluded"]:
        blocks.append(("table", (["excluded task", "reason"], [[k, v] for k, v in sp["excluded"].items()])))
    findings = campaign.state.part("split").findings
    blocks.append(("h3", f"Leakage findings ({len(findings)})"))
    if findings:
        blocks.append(("table", (["kind", "train", "test", "evidence"],
                                 [[f["kind"], f["train_id"], f["test_id"], f["evidence"]] for f in findings])))
    return blocks


def _pairs(s: dict) -> list[Block]:
    p = s["pairs"]
    rows = [[k, str(v)] for k, v in ordered_funnel(p["funnel"]).items()]
    return [("h2", "Pairs"), ("table", (["after filter", "pairs left"], rows)),
            ("p", f"Exported {p['exported']} pairs: {p['export_path']} (sha256 {p['export_sha256']}); TRL copy "
                  f"{p['export_trl_path']}; manifest {p['manifest_path']}.")]


def _lineage(s: dict) -> list[Block]:
    t, ep = s["training"], s["endpoint"]
    rows = [["export sha256", str(t.get("export_sha256"))], ["file", str(t.get("file_id"))],
            ["job", f"{t.get('job_id')} ({t.get('status')})"], ["model", str(t.get("model"))],
            ["training price", _usd(t.get("price_usd"))], ["frozen split", str(t.get("split_hash"))]]
    for e in ep["all"]:
        rows.append([f"endpoint ({e['role']})", f"{e['endpoint_id']} {e['chat_model']} {e['state']}, {e['minutes']} min, "
                                               f"{_usd(e['cost_usd'])}"])
    hp = ", ".join(f"{k}={v}" for k, v in sorted((t.get("hyperparameters") or {}).items()))
    return [("h2", "Lineage"), ("table", (["step", "value"], rows)), ("p", f"Hyperparameters: {hp or '-'}")]


BARS = "▁▂▃▄▅▆▇█"


def spark(values: list[float | None]) -> str:
    """A one-line plot of a curve (NaN as !), scaled to its own range."""
    xs = [v for v in values if v is not None]
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    span = hi - lo or 1.0
    return "".join("!" if v is None else BARS[min(7, int((v - lo) / span * 8))] for v in values)


def _training(s: dict) -> list[Block]:
    runs = s.get("training_metrics") or {}
    if not runs:
        return [("h2", "Training metrics"), ("p", "No training metrics in the log (no job has reported any).")]
    blocks: list[Block] = [("h2", "Training metrics")]
    for run_id, m in runs.items():
        def rng(xs: list) -> str:
            ys = [x for x in xs if x is not None]
            return f"{ys[0]:.4f} -> {ys[-1]:.4f}" if ys else "-"

        rows = [["loss", spark(m["loss"]), rng(m["loss"])], ["reward accuracy", spark(m["accuracy"]), rng(m["accuracy"])]]
        if m["eval_loss"]:
            rows.append(["eval loss", spark(m["eval_loss"]), rng(m["eval_loss"])])
        blocks.append(("p", f"Run {run_id}, job {m['job_id']}: {m['steps']} steps"
                            f"{'' if m['final'] else ' so far (the job had not ended)'}."))
        blocks.append(("table", (["metric", "curve (first to last step)", "first -> last"], rows)))
        for w in m["warnings"]:
            blocks.append(("p", f"Warning: {w}"))
    return blocks


def _eval(s: dict) -> list[Block]:
    ev = s["eval"]
    blocks: list[Block] = [("h2", "Eval: base against tuned")]
    rows = []
    for suite, r in ev["suites"].items():
        k = next((key for key in r["base"] if key != "pass@1"), None)  # none at eval.k = 1
        at_k = f"{_pct(r['base'][k])} / {_pct(r['tuned'][k])} ({k})" if k else "- (k = 1)"
        ci = r.get("ci") or [None, None]
        interval = f"[{ci[0]:+.1%}, {ci[1]:+.1%}]" if None not in ci else "no discordant tasks"
        rows.append([suite, str(r["tasks"]), str(r["runs"]), _pct(r["base"]["pass@1"]), _pct(r["tuned"]["pass@1"]),
                     at_k, f"{r['delta']:+.1%}", r.get("ci_text") or interval, f"{r['p_value']:.3f}", _pct(r["mde"]),
                     f"{r['serving']['base']} vs {r['serving']['tuned']}"])
    blocks.append(("table", (["suite", "tasks", "runs", "base pass@1", "tuned pass@1", "pass@k base / tuned", "delta",
                              "CI", "p (sign-flip)", "MDE", "serving (base vs tuned)"], rows)))
    if ev["decision"]:
        blocks.append(("p", f"Gate: {ev['decision'].upper()} by {ev['decided_by']} (criterion {ev['criterion']}): "
                            f"{ev['reason']}"))
    else:
        blocks.append(("p", "Gate: not decided yet."))
    return blocks


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for kind, body in blocks:
        if kind == "h":
            out.append(f"# {body}\n")
        elif kind in ("h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {body}\n")
        elif kind == "p":
            out.append(f"{body}\n")
        else:
            header, rows = body
            esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
            out.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" +
                       "".join("| " + " | ".join(r) + " |\n" for r in esc))
    return "\n".join(out)


def to_html(blocks: list[Block]) -> str:
    out = ["<!doctype html><meta charset='utf-8'><title>dpo-tui report</title>",
           "<style>body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style>"]
    for kind, body in blocks:
        if kind == "h":
            out.append(f"<h1>{html.escape(body)}</h1>")
        elif kind in ("h2", "h3"):
            out.append(f"<{kind}>{html.escape(body)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(body)}</p>")
        else:
            header, rows = body
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" +
                       "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                       + "</table>")
    return "\n".join(out) + "\n"
