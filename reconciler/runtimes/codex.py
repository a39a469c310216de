"""The `codex` runtime: OpenAI Codex CLI via `codex exec --json`, resumable by thread id.

Owns the codex command lines and the reading of its JSONL event stream. Checked
against codex-cli 0.169.0 (see docs/runtimes.md).

Codex picks its own thread id (it has no flag to take ours): it is read from the
`thread.started` event, so a resume request must carry that id as `session_id`.
`codex exec resume` accepts fewer options than `codex exec` (no -C, -s, -p, --add-dir,
--oss, ...): `-s MODE` is carried over as `-c sandbox_mode="MODE"`, `-C` is dropped
(sessions already run in their worktree), and tier args with no resume equivalent
make `resume_argv` return None so the caller restarts instead.
"""
from __future__ import annotations

from collections.abc import Sequence

from ._logscan import JsonDict, as_int, as_str, json_dicts
from .base import SessionRequest, SessionResult

# `codex exec` options that `codex exec resume` rejects, and whether they take a value.
_DROP_ON_RESUME = {"-C": True, "--cd": True, "--color": True}
_NOT_RESUMABLE = {"-p": True, "--profile": True, "--oss": False, "--local-provider": True,
                  "--add-dir": True, "--approve-for-me": False}
_SANDBOX = ("-s", "--sandbox")
_EPHEMERAL = "--ephemeral"  # no session files: nothing to resume


class CodexRuntime:
    name: str = "codex"
    can_resume: bool = True
    executable: str = "codex"

    def start_argv(self, req: SessionRequest) -> list[str]:
        return [self.executable, "exec", "--json", *_model(req), "-C", str(req.workdir), *req.args,
                "--", req.prompt]

    def resume_argv(self, req: SessionRequest, message: str) -> list[str] | None:
        args = resume_args(req.args)
        if args is None:
            return None
        return [self.executable, "exec", "resume", "--json", *_model(req), *args,
                "--", req.session_id, message]

    def env(self, req: SessionRequest) -> dict[str, str]:
        return {}

    def parse_result(self, output: str) -> SessionResult:
        state = _EventState()
        for event in json_dicts(output):
            state.feed(event)
        return state.result()


def resume_args(args: Sequence[str]) -> list[str] | None:
    """Tier args rewritten for `codex exec resume`; None if they cannot be."""
    out: list[str] = []
    i = 0
    while i < len(args):
        flag, value, inline = _split(args, i)
        if flag == _EPHEMERAL or flag in _NOT_RESUMABLE:
            return None
        if flag in _SANDBOX:
            if value is None:
                return None
            out += ["-c", f'sandbox_mode="{value}"']
        elif flag not in _DROP_ON_RESUME:
            out.append(args[i])
            i += 1
            continue
        i += 1 if inline or value is None else 2
    return out


def _split(args: Sequence[str], i: int) -> tuple[str, str | None, bool]:
    """(flag, its value, value given inline as --flag=value) for a value-taking known flag."""
    arg = args[i]
    name, eq, inline_value = arg.partition("=")
    takes_value = {**_DROP_ON_RESUME, **_NOT_RESUMABLE, "-s": True, "--sandbox": True}.get(name)
    if not takes_value:
        return name, None, False
    if eq:
        return name, inline_value, True
    return name, (args[i + 1] if i + 1 < len(args) else None), False


def _model(req: SessionRequest) -> list[str]:
    return ["-m", req.model] if req.model else []


class _EventState:
    """Folds codex `--json` events into one result."""

    def __init__(self) -> None:
        self.thread_id: str | None = None
        self.usage: JsonDict | None = None
        self.failed: bool | None = None
        self.message: str | None = None

    def feed(self, event: JsonDict) -> None:
        kind = event.get("type")
        if kind == "thread.started":
            self.thread_id = as_str(event.get("thread_id")) or self.thread_id
        elif kind == "turn.completed":
            usage = event.get("usage")
            # usage is the thread's running total, not the turn's: keep the last one.
            self.usage = usage if isinstance(usage, dict) else self.usage
            self.failed = False
        elif kind == "turn.failed":
            self.failed = True
            error = event.get("error")
            self.message = as_str(error.get("message")) if isinstance(error, dict) else self.message
        elif kind == "item.completed":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "agent_message":
                self.message = as_str(item.get("text")) or self.message

    def result(self) -> SessionResult:
        usage = self.usage or {}
        cached = as_int(usage.get("cached_input_tokens"))
        extra: dict[str, object] = {"usage_scope": "conversation"}
        if cached is not None:
            extra["cached_input_tokens"] = cached
        return SessionResult(
            session_id=self.thread_id,
            cost_usd=None,  # codex reports tokens only
            input_tokens=as_int(usage.get("input_tokens")),
            output_tokens=as_int(usage.get("output_tokens")),
            is_error=self.failed,
            message=self.message,
            extra=extra if self.thread_id or self.usage else {},
        )
