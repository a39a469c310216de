"""The `claude` runtime: Claude Code in print mode (`claude -p`), resumable by session UUID.

Owns the claude command lines and the reading of its `--output-format stream-json --verbose`
log: one JSON event per line (`system` init, `assistant`/`user` messages as they happen,
and a final `result` carrying total_cost_usd, session_id, usage and modelUsage). Events
as they happen are what live spend and the log renderer read; the result is what a
finished run is folded from. Checked against Claude Code 2.1.332 (see docs/runtimes.md).

Root: claude refuses `--permission-mode bypassPermissions` (and the
`--dangerously-skip-permissions` flags) when run as root, unless `IS_SANDBOX=1` or
`CLAUDE_CODE_BUBBLEWRAP` is set in its environment; it then prints one line to
stderr and exits 1 without a result object. `start_argv`/`resume_argv` raise
ValueError up front instead, so the operator sees why rather than a failed session.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from ._logscan import JsonDict, as_float, as_int, as_str, last_dict
from .base import SessionRequest, SessionResult

_BYPASS_FLAGS = frozenset({"--dangerously-skip-permissions", "--allow-dangerously-skip-permissions"})
_NO_PERSISTENCE = "--no-session-persistence"  # sessions not saved to disk cannot be resumed
_RESULT_MARKER = re.compile(r'"type"\s*:\s*"result"')
_EXTRA_KEYS = ("subtype", "num_turns", "terminal_reason", "api_error_status", "api_error_type", "stop_reason",
               "duration_ms", "duration_api_ms")


def requests_bypass(args: Sequence[str]) -> bool:
    """True if the tier args ask claude to skip all permission checks."""
    for i, arg in enumerate(args):
        if arg in _BYPASS_FLAGS or arg == "--permission-mode=bypassPermissions":
            return True
        if arg == "--permission-mode" and i + 1 < len(args) and args[i + 1] == "bypassPermissions":
            return True
    return False


def check_bypass_allowed(args: Sequence[str], euid: int, environ: Mapping[str, str]) -> None:
    """Raise ValueError where claude itself would refuse bypassPermissions (root, no sandbox marker)."""
    if not requests_bypass(args) or euid != 0:
        return
    if environ.get("IS_SANDBOX") == "1" or environ.get("CLAUDE_CODE_BUBBLEWRAP"):
        return
    raise ValueError(
        "claude refuses --permission-mode bypassPermissions / --dangerously-skip-permissions "
        "when run as root; run fleet as a non-root user, use another permission mode "
        "(e.g. acceptEdits with --allowedTools), or, only inside a real sandbox, "
        "export IS_SANDBOX=1 in the environment that runs fleet")


class ClaudeRuntime:
    name: str = "claude"
    can_resume: bool = True
    executable: str = "claude"

    def start_argv(self, req: SessionRequest) -> list[str]:
        check_bypass_allowed(req.args, os.geteuid(), os.environ)
        return [self.executable, "-p", "--session-id", req.session_id, *self._common(req), "--",
                req.prompt + lock_hint(req.locks)]

    def resume_argv(self, req: SessionRequest, message: str) -> list[str] | None:
        if _NO_PERSISTENCE in req.args:
            return None
        check_bypass_allowed(req.args, os.geteuid(), os.environ)
        return [self.executable, "-p", "--resume", req.session_id, *self._common(req), "--", message]

    def env(self, req: SessionRequest) -> dict[str, str]:
        return {}


    def parse_result(self, output: str) -> SessionResult:
        data = last_dict(output, _is_result, _RESULT_MARKER)
        if data is None:
            return SessionResult()
        input_tokens, output_tokens = _tokens(data)
        extra: dict[str, object] = {k: data[k] for k in _EXTRA_KEYS if k in data}
        # A resumed conversation's first result already includes the earlier turns' cost.
        extra["usage_scope"] = "conversation"
        return SessionResult(
            session_id=as_str(data.get("session_id")),
            cost_usd=as_float(data.get("total_cost_usd")),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            is_error=_as_bool(data.get("is_error")),
            message=_message(data),
            extra=extra,
        )

    @staticmethod
    def _common(req: SessionRequest) -> list[str]:
        # The prompt goes after `--`: tier args like --allowedTools are variadic and
        # would swallow it, and a prompt starting with "-" would parse as an option.
        model = ["--model", req.model] if req.model else []
        # stream-json needs --verbose in print mode (the CLI refuses it otherwise)
        return [*model, "--output-format", "stream-json", "--verbose", *req.args]


def _is_result(data: JsonDict) -> bool:
    return data.get("type") == "result"


def _tokens(data: JsonDict) -> tuple[int | None, int | None]:
    """Input (incl. cache reads/writes) and output tokens.

    `modelUsage` covers subagents and internal calls; `usage` only the main loop,
    so it is the fallback.
    """
    model_usage = data.get("modelUsage")
    if isinstance(model_usage, dict) and model_usage:
        rows = [row for row in model_usage.values() if isinstance(row, dict)]
        return (_sum(rows, "inputTokens", "cacheReadInputTokens", "cacheCreationInputTokens"),
                _sum(rows, "outputTokens"))
    usage = data.get("usage")
    if isinstance(usage, dict):
        return (_sum([usage], "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
                _sum([usage], "output_tokens"))
    return None, None


def _as_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _sum(rows: list[JsonDict], *keys: str) -> int | None:
    values = [v for row in rows for v in (as_int(row.get(k)) for k in keys) if v is not None]
    return sum(values) if values else None


def _message(data: JsonDict) -> str | None:
    result = as_str(data.get("result"))
    status = as_int(data.get("api_error_status"))
    if result and status is not None and str(status) not in result:
        # 2.1.332 on a 401: "Invalid API key · Fix external API key", the status only in its own field
        return f"API error {status}: {result}"
    if result:
        return result
    errors = data.get("errors")
    if isinstance(errors, list):
        text = "; ".join(e for e in errors if isinstance(e, str))
        return text or None
    return None


def lock_hint(locks: tuple[str, ...]) -> str:
    """One line telling the agent how to serialise expensive steps with the fleet's locks."""
    if not locks:
        return ""
    names = ", ".join(locks)
    return (f"\n\nOther agents share this machine. Wrap expensive builds and test runs in a fleet lock "
            f"so they take turns: `fleet lock {locks[0]} -- <command>` (locks: {names}).")
