"""Live spend of running sessions, as they run (docs/operations.md "Live spend").

claude: the cost claude itself exported over OTLP to its session host's receiver
(act/spend_receiver.py), written to the run's spend file within about a second of each
model response. Its stream-json log cannot give that figure (an `assistant` event has
the output count of the message's start), so the log is the fallback, and the larger
of the two is taken: a figure can lag, never run ahead of what was billed.
codex's `turn.completed` usage and aider's `Cost:` lines land in the session log while
the run goes. Each log is read incrementally: a long-lived reader (the control loop)
keeps where it stopped per log and reads only what was appended; a one-shot pass
(apply, status) reads the current run's part from its last run marker, at most the
last `_MOST` bytes.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..runtimes.pricing import Price, Tokens, cost, priced
from ..runtimes.usage import RunUsage, run_usage
from ..store.records import SessionRecord

if TYPE_CHECKING:
    from .model import ObservedAgent

RUN_MARKER = "--- fleet: "  # act/sessions.py writes it before each start/resume
_MOST = 4 * 1024 * 1024


@dataclass
class _Cursor:
    inode: int
    offset: int  # bytes of the log read so far
    started_at: str | None  # the run the cursor is in
    pending: str = ""  # a line not finished yet
    usage: RunUsage = field(default_factory=RunUsage)


@dataclass(frozen=True)
class LiveSpend:
    usd: float | None  # None: tokens of a model without a price
    tokens: int
    source: str = "log"  # "otlp": the CLI's own cost metric (claude)


_CURSORS: dict[Path, _Cursor] = {}


def live_spend(rec: SessionRecord, log: Path, prices: Sequence[Price] = (),
               spend_file: Path | None = None) -> LiveSpend | None:
    """What the running session `rec` has spent in its current run so far; None if neither its
    spend file nor its log says anything about usage."""
    if not rec.runtime:
        return None
    logged = _from_log(rec, log, prices)
    exported = exported_spend(rec, spend_file) if spend_file is not None else None
    if exported is None:
        return logged
    if logged is None or logged.usd is None:
        return exported
    usd_now = exported.usd if exported.usd is not None and exported.usd >= logged.usd else logged.usd
    return LiveSpend(usd_now, max(exported.tokens, logged.tokens), "otlp" if usd_now == exported.usd else "log")


def exported_spend(rec: SessionRecord, spend_file: Path) -> LiveSpend | None:
    """What the run's own cost metrics say (act/spend_receiver.py), if its host wrote any: the
    file belongs to this run when its host's pid is the record's, and the figure to this session
    by `session.id`."""
    try:
        data = json.loads(spend_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("pid") != rec.pid or not rec.session_id:
        return None
    sessions = data.get("sessions")
    mine = sessions.get(rec.session_id) if isinstance(sessions, dict) else None
    if not isinstance(mine, dict):
        return None
    try:
        return LiveSpend(float(mine.get("usd") or 0.0), int(mine.get("tokens") or 0), "otlp")
    except (TypeError, ValueError):
        return None


def _from_log(rec: SessionRecord, log: Path, prices: Sequence[Price]) -> LiveSpend | None:
    usage = _read(rec, log)
    if usage is None:
        return None
    if usage.usd is not None:
        return LiveSpend(usage.usd, usage.tokens)
    if not usage.by_model:
        return None
    if rec.runtime == "codex":  # its usage is the thread's running total, priced with the declared model
        tokens = next(iter(usage.by_model.values()))
        return LiveSpend(cost(rec.model, tokens, prices), tokens.total)
    usd, _ = priced(usage.by_model, prices)
    return LiveSpend(usd, usage.tokens)


def observe_live(agent: ObservedAgent, log: Path, prices: Sequence[Price] = (),
                 spend_file: Path | None = None) -> None:
    """`live_usd` and `live_tokens` of a running agent, from its session log (`log`: the local
    session's own, or a ray session's copy on the fleet machine) and, for a local claude
    session, its spend file: what the budgets and the per-run caps of the planner read,
    whichever engine runs the session."""
    if not agent.alive or agent.record is None:
        return
    spent = live_spend(agent.record, log, prices, spend_file)
    if spent is not None:
        agent.live_usd, agent.live_tokens = spent.usd, spent.tokens


def _read(rec: SessionRecord, log: Path) -> RunUsage | None:
    try:
        with log.open("rb") as f:
            st = os.fstat(f.fileno())
            cursor = _CURSORS.get(log)
            if cursor is None or cursor.inode != st.st_ino or cursor.offset > st.st_size \
                    or cursor.started_at != rec.started_at:
                start = max(0, st.st_size - _MOST)
                f.seek(start)
                text = f.read().decode(errors="replace")
                marker = text.rfind(RUN_MARKER)
                text = text[marker:] if marker >= 0 else text
                cursor = _Cursor(st.st_ino, st.st_size, rec.started_at)
                _CURSORS[log] = cursor
                complete, _, cursor.pending = text.rpartition("\n")
                cursor.usage = run_usage(rec.runtime or "", complete)
                return cursor.usage
            f.seek(cursor.offset)
            added = f.read(st.st_size - cursor.offset).decode(errors="replace")
            cursor.offset = st.st_size
    except OSError:
        return None
    if not added:
        return cursor.usage
    complete, _, cursor.pending = (cursor.pending + added).rpartition("\n")
    _merge(cursor.usage, run_usage(rec.runtime or "", complete), rec.runtime or "")
    return cursor.usage


def _merge(into: RunUsage, more: RunUsage, runtime: str) -> None:
    if runtime == "codex":  # a running total: the newest one replaces
        into.by_model = more.by_model or into.by_model
    elif runtime == "claude":  # by message id: one message may come as several events
        into.messages.update(more.messages)
        into.regroup()
    else:
        for model, tokens in more.by_model.items():
            into.by_model[model] = into.by_model.get(model, Tokens()) + tokens
    into.usd = more.usd if more.usd is not None else into.usd
    into.version = more.version or into.version
    into.warnings = (into.warnings + [w for w in more.warnings if w not in into.warnings])[-5:]
    into.seen = into.seen or more.seen
