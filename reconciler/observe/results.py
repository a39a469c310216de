"""Bring a session record up to date with what observation shows (ended, exit, cost)."""
from __future__ import annotations

import copy
from pathlib import Path

from ..runtimes import get_runtime
from ..runtimes.base import SessionResult
from ..state import FAILED, RUNNING, SUCCEEDED, SessionRecord, now_iso
from .snapshot import ObservedAgent

RUN_MARKER = "--- fleet: "  # written by act/sessions.py before each start/resume
_LOG_TAIL = 256 * 1024  # result objects are printed last; never read a huge log whole


def refreshed(obs: ObservedAgent, log_text: str | None) -> SessionRecord | None:
    """The record with a finished session folded in; the same record if nothing changed.

    Never mutates its input, so `fleet status` can show it without writing, and
    apply/the loop persist it.
    """
    rec = obs.record
    if rec is None or rec.phase != RUNNING or obs.alive:
        return rec
    phase = obs.phase or FAILED
    rec = copy.deepcopy(rec)
    rec.phase = phase
    rec.exit_code = obs.exit_code
    rec.finished_at = obs.exit.finished_at if obs.exit and obs.exit.pid == rec.pid else now_iso()
    if obs.exit is None or obs.exit.pid != rec.pid:
        rec.reason = "session ended without an exit status (killed?)"
        rec.set_condition("Ready", "False", "SessionLost", rec.reason)
    elif phase == SUCCEEDED:
        rec.reason = None
        rec.set_condition("Ready", "True", "Completed", "session exited 0")
    else:
        rec.reason = f"session exited {rec.exit_code}"
        rec.set_condition("Ready", "False", "Error", rec.reason)
    if log_text and rec.runtime:
        _fold_result(rec, get_runtime(rec.runtime).parse_result(last_run(log_text)), phase)
    return rec


def _fold_result(rec: SessionRecord, result: SessionResult, phase: str) -> None:
    if result.cost_usd is not None:
        # claude/codex report a resumed conversation's running total, others one process's
        # spend: either way one ledger entry per conversation or run, set, never added
        per_conversation = result.extra.get("usage_scope") == "conversation"
        key = (result.session_id or rec.session_id) if per_conversation else None
        rec.ledger[key or f"run-{rec.started_at}"] = {"usd": result.cost_usd, "at": rec.finished_at}
        rec.cost_usd = round(sum(float(e["usd"]) for e in rec.ledger.values()), 6)
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
            f.seek(max(0, size - _LOG_TAIL))
            return f.read().decode(errors="replace")
    except OSError:
        return None
