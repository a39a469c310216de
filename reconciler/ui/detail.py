"""One agent's page: its row, conditions, a timeline of runs, the log, commits ahead of base.

The timeline comes from what fleet already keeps: the run markers the session host writes
into the log before each start and resume (act/sessions.py), the record's finish, cost
ledger and last gate, and the conditions' transition times. Commits and the diffstat come
from git in the agent's worktree (read-only, GIT_OPTIONAL_LOCKS=0).
"""
from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..act.lifecycle import RUN_MARKER
from ..observe.gittree import git_env
from ..store.records import SessionRecord, StateStore

LOG_TAIL_BYTES = 64 * 1024
_MARKER = re.compile(re.escape(RUN_MARKER) + r"(start|resume|restart)\s+(\S+?):?\s(.*)")


def timeline(rec: SessionRecord | None, log_text: str) -> list[dict[str, Any]]:
    """Runs, resumes, restarts, the finish and gate results, oldest first."""
    events: list[dict[str, Any]] = []
    starts = 0
    for line in log_text.splitlines():
        m = _MARKER.match(line)
        if not m:
            continue
        kind, at, rest = m.groups()
        if kind == "start":
            kind = "restart" if starts else "start"
            starts += 1
        events.append({"at": at, "kind": kind, "text": rest.strip()[:200]})
    if rec is not None:
        if rec.finished_at:
            code = f"exit {rec.exit_code}" if rec.exit_code is not None else (rec.reason or "ended")
            events.append({"at": rec.finished_at, "kind": "finished", "text": f"{rec.phase}: {code}"})
        for run, entry in rec.ledger.items():
            if entry.get("at"):
                events.append({"at": str(entry["at"]), "kind": "cost",
                               "text": f"${float(entry.get('usd') or 0):.4f} ({run})"})
        if rec.last_gate:
            g = rec.last_gate
            verdict = "passed" if g.get("exit_code") == 0 else f"failed (exit {g.get('exit_code')})"
            events.append({"at": str(g.get("at") or rec.finished_at or ""), "kind": "gate",
                           "text": f"gate {g.get('name')} {verdict}"})
        for c in rec.conditions:
            events.append({"at": c.lastTransitionTime, "kind": "condition",
                           "text": f"{c.type}={c.status} ({c.reason}) {c.message}".strip()})
    return sorted(events, key=lambda e: _sortable(e["at"]))


def _sortable(at: str) -> datetime:
    # log markers carry the host's local offset (+0000); records carry UTC with a colon offset
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def log_tail(store: StateStore, agent: str, offset: int | None = None) -> tuple[str, int]:
    """The log's whole lines from `offset` (default: its last LOG_TAIL_BYTES), and the offset after them."""
    path = store.log_path(agent)
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            start = max(0, size - LOG_TAIL_BYTES) if offset is None or offset > size else offset
            f.seek(start)
            data = f.read(size - start)
    except OSError:
        return "", 0
    # whole lines only: a line still being written is read once it ends (the next tail starts there)
    whole = data[:data.rfind(b"\n") + 1]
    return whole.decode(errors="replace"), start + len(whole)


def rendered(log_text: str) -> str:
    """Log lines as `fleet logs` shows them (claude and codex events as messages and tool calls)."""
    from ..render.session_log import render_text  # the renderer of `fleet logs` and describe

    shown = "\n".join(line.plain for line in render_text(log_text))
    return shown + "\n" if shown else ""


def commits(worktree: str | None, base: str) -> dict[str, Any]:
    """Commits ahead of `base` and the diffstat of the branch against it (merge-base)."""
    if not worktree or not Path(worktree).is_dir():
        return {"available": False, "why": "no worktree on this machine", "commits": [], "diffstat": ""}
    env = git_env(GIT_OPTIONAL_LOCKS="0")

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", worktree, *args], capture_output=True, text=True, env=env,
                              timeout=10, check=False)
        return proc.stdout if proc.returncode == 0 else ""

    log = git("log", "--format=%h%x09%cI%x09%s", "-n", "200", f"{base}..HEAD")
    rows = [dict(zip(("sha", "at", "subject"), line.split("\t", 2), strict=False)) for line in log.splitlines()]
    return {"available": True, "why": None, "commits": rows, "diffstat": git("diff", "--stat", f"{base}...HEAD")}
