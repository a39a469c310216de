"""When did a running session last make progress? Cheapest signals first, all `stat` calls.

Signals: its log growing, its runtime's transcript growing (claude writes one JSONL
line per message), and its worktree's index or HEAD changing (a `git add` or a commit).
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

from ..store.records import SessionRecord


def last_progress(rec: SessionRecord, *, log: Path, admin_dir: Path | None) -> float | None:
    """Epoch seconds of the latest sign of life, or None if there is none at all."""
    candidates = [log]
    if admin_dir is not None:
        candidates += [admin_dir / "index", admin_dir / "HEAD", admin_dir / "logs" / "HEAD"]
    times = [t for t in (_mtime(p) for p in candidates) if t is not None]
    for transcript in transcripts(rec):
        progress, _ = transcript_activity(transcript)
        if progress is not None:
            times.append(progress)
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


_TAIL = 64 * 1024
_TRANSCRIPT_MOST = 8 * 1024 * 1024  # a transcript read for costs: its last 8 MiB (usage of this run's messages)


def read_transcript(rec: SessionRecord) -> str | None:
    """The session's transcript text (its tail), for pricing a run that printed no result."""
    for path in transcripts(rec):
        try:
            with path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _TRANSCRIPT_MOST))
                return f.read().decode(errors="replace")
        except OSError:
            continue
    return None


def transcript_activity(path: Path) -> tuple[float | None, str | None]:
    """(time of the last real message, the last API error retried since), from the tail.

    While claude retries a failing API call it appends an `api-request` and a
    `system/api_error` line per attempt: that is waiting, not progress, so those lines
    do not count (else a retry loop would never look stalled), but the last error is
    kept to say why it hangs.
    """
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None, None
    error: str | None = None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if _is_retry(entry):
            error = error or _api_error(entry)
            continue
        stamp = _timestamp(entry)
        if stamp is None:  # bookkeeping (last-prompt, cost-state written at exit): not a message
            continue
        return stamp, error
    return None, error


def last_api_error(rec: SessionRecord) -> str | None:
    for transcript in transcripts(rec):
        _, error = transcript_activity(transcript)
        if error:
            return error
    return None


def _is_retry(entry: dict[str, object]) -> bool:
    return entry.get("type") == "api-request" or (entry.get("type") == "system"
                                                   and entry.get("subtype") == "api_error")


def _api_error(entry: dict[str, object]) -> str | None:
    error = entry.get("error")
    if not isinstance(error, dict):
        return None
    status, text = error.get("status"), str(error.get("message") or error.get("formatted") or "")
    prefix = f"API error {status}: " if status and str(status) not in text[:12] else "API error: "
    return (prefix + " ".join(text.split()))[:300]


def _timestamp(entry: dict[str, object]) -> float | None:
    stamp = entry.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
