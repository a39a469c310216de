"""The session record's state machine, shared by every engine (docs/sessions.md "Records").

- `started`: a run began (attempts, gate counters, Running, pid/session, times, Ready);
- `refreshed`: a run that observation shows ended is folded in (exit, cost, gates next);
- `could_not_start`, `exit_unknown`: a run whose program never started, or whose exit record
  is unreadable: Failed and `held` (not restarted for this spec until a person acts);
- `stopped`: fleet stopped a run (a plain stop is Pending; a stall or deadline is a failure);
- `back_off`: the earliest restart after a failure.

Engines do the world-touching part (engines/executor.py calls them); what a record says
after each step is decided here, once.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from ..observe.snapshot import ObservedAgent
from ..runtimes import get_runtime
from ..runtimes.base import SessionResult
from ..runtimes.pricing import Price
from ..runtimes.usage import RunUsage, run_usage
from ..spec.desired import DesiredAgent
from ..spec.durations import parse_duration
from ..spec.models import Backoff
from ..store import clock
from ..store.records import FAILED, PENDING, RUNNING, SUCCEEDED, CannotStart, SessionRecord, now_iso
from .costs import fold_run, model_mismatch

RUN_MARKER = "--- fleet: "  # written by act/sessions.py before each start/resume
LOG_TAIL_BYTES = 256 * 1024  # result objects are printed last; never read a huge log whole


def refreshed(obs: ObservedAgent, log_text: str | None, backoff: Backoff | None = None, *,
              transcript: str | None = None, prices: Sequence[Price] = ()) -> SessionRecord | None:
    """The record with a finished session folded in; the same record if nothing changed.

    Never mutates its input, so `fleet status` can show it without writing, and
    apply/the loop persist it.
    """
    rec = obs.record
    if rec is None or rec.phase != RUNNING or obs.alive:
        return rec
    phase = obs.phase or FAILED
    rec = rec.clone()
    rec.phase = phase
    rec.exit_code = obs.exit_code
    # a session that vanished without an exit record is taken to have ended when a
    # persisting pass (apply, the loop) first saw it gone; its backoff counts from there
    ended = obs.exit.finished_at if obs.exit is not None and obs.ended_here else now_iso()
    rec.finished_at = not_before(ended, rec.started_at)
    if obs.exit is not None and obs.exit.corrupt is not None:
        exit_unknown(rec, obs.exit.corrupt)
    elif obs.exit is None or not obs.ended_here:
        rec.reason = "session ended without an exit status (killed?)"
        rec.set_condition("Ready", "False", "SessionLost", rec.reason)
    elif obs.exit.cannot_start is not None:
        could_not_start(rec, obs.exit.cannot_start)
    elif phase == SUCCEEDED:
        rec.reason = None
        rec.set_condition("Ready", "True", "Completed", "session exited 0")
    else:
        rec.reason = f"session exited {rec.exit_code}"
        rec.set_condition("Ready", "False", "Error", rec.reason)
    if rec.runtime:
        run_log = last_run(log_text or "")
        _fold_result(rec, get_runtime(rec.runtime).parse_result(run_log) if run_log else SessionResult(), phase,
                     usage=run_usage(rec.runtime, run_log, transcript), prices=prices)
    if rec.phase == SUCCEEDED:
        rec.restarts, rec.backoff_until = 0, None
        if rec.gates:  # the agent's word is not enough: the reconciler runs the gates next
            rec.phase, rec.gates_pending = PENDING, True
            rec.reason = f"session exited 0; gates not run yet: {', '.join(rec.gates)}"
            rec.set_condition("GatesPassed", "Unknown", "Pending", rec.reason)
            rec.set_condition("Ready", "Unknown", "GatesPending", rec.reason)  # not Completed before its gates
    elif rec.phase == FAILED and rec.held is None:
        back_off(rec, backoff or Backoff())
    return rec


def could_not_start(rec: SessionRecord, cannot: CannotStart) -> None:
    """The run's program did not start: a configuration error, not a crash. The agent is Failed
    and this spec is not restarted (the planner reads `held`): every restart would fail the
    same way, forever."""
    rec.phase, rec.exit_code, rec.backoff_until = FAILED, 127, None
    rec.finished_at = not_before(rec.finished_at or now_iso(), rec.started_at)
    rec.reason = f"{cannot.message}; not restarted until the spec changes"
    rec.held = cannot.message
    rec.set_condition("StartFailed", "True", cannot.reason,
                      f"{cannot.message}. Install the program or fix the agent's command (a relative path is "
                      f"resolved in its worktree), then change the agent's spec, or `fleet delete` it and apply, "
                      f"to start it again")
    rec.set_condition("Ready", "False", "StartFailed", cannot.message)


def exit_unknown(rec: SessionRecord, why: str) -> None:
    """The run ended but its exit record cannot be read. It may have succeeded, so it is not
    restarted (`held`) until a person has looked; the file is kept aside, never deleted."""
    rec.phase, rec.exit_code, rec.backoff_until = FAILED, None, None
    rec.reason = f"exit status unknown: {why}; not restarted until someone looks"
    rec.held = rec.reason
    rec.set_condition("ExitRecordCorrupt", "True", "ExitRecordCorrupt",
                      f"{why}; fleet keeps it aside as {rec.agent}.exit.json.corrupt-<time> in the same directory. "
                      f"The run may have succeeded, so fleet does not restart it: read its log (`fleet logs "
                      f"FILE {rec.agent}`) and its branch {rec.branch or ''}; to run it again, change its spec "
                      f"or `fleet delete` it and apply")
    rec.set_condition("Ready", "False", "ExitRecordCorrupt", rec.reason)


def started(rec: SessionRecord, agent: DesiredAgent, *, session_id: str, pid: int | None,
            create_time: float | None, ready: str, started_at: str | None = None,
            reserved_usd: float | None = None, cap_usd: float | None = None) -> None:
    """A run of `agent`'s current spec has begun. `started_at` is when the launch began (taken
    before it: a program that cannot start has finished by the time the launch returns)."""
    # attempts count runs of one spec: a restart or resume adds one, a new spec starts over
    rec.attempts = rec.attempts + 1 if rec.spec_hash == agent.spec_hash else 1
    if rec.spec_hash != agent.spec_hash:  # a new spec starts its gate attempts over
        rec.gate_failures, rec.gates_exhausted, rec.last_gate = {}, False, None
    rec.gates, rec.gates_pending, rec.gate_feedback = list(agent.gates), False, None
    rec.phase, rec.pid, rec.create_time = RUNNING, pid, create_time
    rec.session_id, rec.spec_hash, rec.session_spec = session_id, agent.spec_hash, agent.session_spec()
    rec.started_at, rec.finished_at, rec.exit_code, rec.reason = started_at or now_iso(), None, None, None
    rec.held = None
    rec.reserved_usd, rec.cap_usd, rec.paused = reserved_usd, cap_usd, False
    rec.set_condition("Ready", "Unknown", "Running", ready)
    for waited in ("BudgetExhausted", "CrashLoopBackOff", "Blocked", "StartFailed", "ExitRecordCorrupt", "Pilot",
                   "CostUnknown"):
        rec.clear_condition(waited, "Started")


def stopped(rec: SessionRecord, *, reason: str, condition: str | None, tail: list[str],
            api_error: str | None, policy: Backoff, pause: bool = False) -> None:
    """fleet stopped the run. `condition` (Stalled, DeadlineExceeded) makes it a failure,
    restarted per policy, with the last output kept for status; otherwise it is Pending."""
    rec.finished_at = not_before(now_iso(), rec.started_at)
    if condition:
        if api_error:  # a CLI retrying a failing API prints nothing meanwhile
            tail = [*tail, f"last API error retried: {api_error}"]
        rec.phase, rec.exit_code, rec.last_output = FAILED, None, tail
        rec.reason = reason + (f"; last output: {tail[-1]}" if tail else "; no output")
        rec.set_condition(condition, "True", condition, reason)
        rec.set_condition("Ready", "False", condition, reason)
        back_off(rec, policy)
    elif pause:
        # a budget ran out: the conversation is kept and resumed when the budget allows
        rec.phase, rec.reason, rec.paused = PENDING, f"paused: {reason}", True
        rec.set_condition("BudgetExhausted", "True", "BudgetExhausted", reason)
        rec.set_condition("Ready", "False", "Paused", reason)
    else:
        rec.phase, rec.reason = PENDING, f"stopped: {reason}"
        rec.set_condition("Ready", "False", "Stopped", reason)


def held_by_operator(rec: SessionRecord, reason: str) -> None:
    """An operator stopped the run (`fleet ui --actions`): Failed and `held`, so no restart
    policy starts it again; their restart or resume, or a new spec, starts it."""
    rec.phase, rec.reason, rec.held = FAILED, reason, reason
    rec.set_condition("Ready", "False", "StoppedByOperator", reason)


def workspace_lost(rec: SessionRecord, *, reason: str, condition: str, policy: Backoff) -> None:
    """The run ended but its workspace is gone before its gates ran: a failure, run again."""
    rec.gates_pending, rec.phase = False, FAILED
    rec.finished_at = not_before(rec.finished_at or now_iso(), rec.started_at)
    rec.reason = reason
    rec.set_condition("Ready", "False", condition, reason)
    back_off(rec, policy)


def back_off(rec: SessionRecord, policy: Backoff) -> None:
    """Schedule the earliest restart: initial * 2^(failures-1), capped; a healthy run resets."""
    started = _parse(rec.started_at)
    finished = _parse(rec.finished_at) or clock.now()
    if started and (finished - started).total_seconds() >= parse_duration(policy.resetAfter):
        rec.restarts = 0
    rec.restarts += 1
    delay = min(parse_duration(policy.initial) * 2 ** (rec.restarts - 1), parse_duration(policy.max))
    rec.backoff_until = (finished + timedelta(seconds=delay)).isoformat(timespec="milliseconds")


def _parse(when: str | None) -> datetime | None:
    return datetime.fromisoformat(when) if when else None


def not_before(when: str, start: str | None) -> str:
    """`when`, or `start` if `when` is earlier: a run never finishes before it started (an exit
    record carries the session host's clock, and a remote node's clock may lag the driver's)."""
    if start is None:
        return when
    try:
        end, begin = _parse(when), _parse(start)
        return start if end is not None and begin is not None and end < begin else when
    except (ValueError, TypeError):  # not a time fleet wrote: keep what was recorded
        return when


def fold_stopped_run(rec: SessionRecord, log_text: str, *, transcript: str | None = None,
                     prices: Sequence[Price] = ()) -> None:
    """The cost of a run fleet stopped (stall, deadline, budget pause): nothing is killed
    without its cost recorded."""
    if not rec.runtime:
        return
    run_log = last_run(log_text)
    result = get_runtime(rec.runtime).parse_result(run_log) if run_log else SessionResult()
    _record_cost(rec, result, run_usage(rec.runtime, run_log, transcript), prices)


def _record_cost(rec: SessionRecord, result: SessionResult, usage: RunUsage, prices: Sequence[Price]) -> None:
    entry = fold_run(rec, result, usage, prices=prices)
    if entry is not None and entry.get("unknown"):
        rec.set_condition("CostUnknown", "True", "CostUnknown",
                          f"the run of {rec.started_at} left no usage fleet can read; it counts at its cap "
                          f"${_number(entry.get('usd')):.4g}")
    models = entry.get("models") if entry is not None else None
    mismatch = model_mismatch(rec.model, models if isinstance(models, list) else [])
    if mismatch:
        rec.set_condition("ModelMismatch", "True", "BilledAsAnotherModel", mismatch)
    elif entry is not None and models:
        rec.clear_condition("ModelMismatch", "BilledAsDeclared")
    if usage.warnings:
        rec.set_condition("CLIWarning", "True", "CLIWarning", "; ".join(usage.warnings))


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def _fold_result(rec: SessionRecord, result: SessionResult, phase: str, *, usage: RunUsage,
                 prices: Sequence[Price]) -> None:
    _record_cost(rec, result, usage, prices)
    if result.session_id:
        rec.session_id = result.session_id
    if result.is_error and phase == SUCCEEDED:
        rec.phase = FAILED
        rec.reason = f"runtime reported an error: {result.message or 'is_error'}"
        rec.set_condition("Ready", "False", "RuntimeError", rec.reason)
    elif result.is_error and result.message:
        rec.reason = f"{rec.reason}: {result.message[:200]}"


def last_run(log_text: str) -> str:
    """The part of a session log written by its latest start or resume."""
    marker = log_text.rfind(RUN_MARKER)
    return log_text[marker:] if marker >= 0 else log_text


def read_log_tail(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return None
