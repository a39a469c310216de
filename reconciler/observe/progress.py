"""When did a running session last make progress? Cheapest signals first, all `stat` calls.

Signals: its log growing, its runtime's transcript growing (claude writes one JSONL
line per message), and its worktree's index or HEAD changing (a `git add` or a commit).
"""
from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from ..state import SessionRecord


def last_progress(rec: SessionRecord, *, log: Path, admin_dir: Path | None) -> float | None:
    """Epoch seconds of the latest sign of life, or None if there is none at all."""
    candidates = [log, *transcripts(rec)]
    if admin_dir is not None:
        candidates += [admin_dir / "index", admin_dir / "HEAD", admin_dir / "logs" / "HEAD"]
    times = [t for t in (_mtime(p) for p in candidates) if t is not None]
    if rec.started_at:
        times.append(datetime.fromisoformat(rec.started_at).timestamp())
    return max(times) if times else None


def transcripts(rec: SessionRecord) -> list[Path]:
    """Where the runtime keeps the session's transcript, if it has one we can find."""
    if rec.runtime != "claude" or not rec.session_id or not rec.worktree:
        return []
    projects = Path(os.path.expanduser("~")) / ".claude" / "projects"
    # claude names the project directory after the cwd with separators (and, in recent
    # versions, every non-alphanumeric character) turned into '-'
    names = {rec.worktree.replace("/", "-"), re.sub(r"[^A-Za-z0-9]", "-", rec.worktree)}
    return [projects / name / f"{rec.session_id}.jsonl" for name in names]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def last_lines(text: str, n: int = 8) -> list[str]:
    """The last meaningful lines of a log: no blank lines, no fleet markers, no noise."""
    lines = [line.rstrip() for line in text.splitlines()]
    keep = [line for line in lines if line.strip() and not line.startswith("--- fleet")]
    return [line[:300] for line in keep[-n:]]
