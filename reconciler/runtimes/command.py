"""The `command` runtime: any executable, the prompt in FLEET_PROMPT.

Resuming re-runs the same argv in the same worktree with the same FLEET_SESSION_ID,
and the message (a failed gate's output, or why the last run ended) in
FLEET_MESSAGE, with FLEET_RESUME=1: a scripted agent can pick up where it stopped.

Owns the command line (the agent's declared argv plus tier args) and an optional
result protocol, so scripted agents can report cost like the real CLIs: if the
LAST non-blank line of the output is a JSON object with `fleet_result`,
`total_cost_usd`, `cost_usd` or `session_id`, it is read as the result:

    {"fleet_result": {"cost_usd": 0.12, "session_id": "abc", "is_error": false}}
    {"total_cost_usd": 0.12, "session_id": "abc"}            # claude-style, also fine

Fields (inside `fleet_result` when it is an object, else at the top level):
`cost_usd` (or `total_cost_usd`), `session_id`, `input_tokens`, `output_tokens`,
`is_error`, `message`. Values of the wrong type are ignored.
"""
from __future__ import annotations

import json

from ._logscan import JsonDict, as_float, as_int, as_str
from .base import SessionRequest, SessionResult

_RESULT_KEYS = ("fleet_result", "total_cost_usd", "cost_usd", "session_id")


class CommandRuntime:
    name: str = "command"
    can_resume: bool = True

    def start_argv(self, req: SessionRequest) -> list[str]:
        if not req.command:
            raise ValueError(f"agent {req.agent}: runtime `command` needs `command:` (the argv to run)")
        return [*req.command, *req.args]

    def resume_argv(self, req: SessionRequest, message: str) -> list[str] | None:
        return self.start_argv(req)  # the message travels in FLEET_MESSAGE (set by fleet on resume)

    def env(self, req: SessionRequest) -> dict[str, str]:
        return {"FLEET_PROMPT": req.prompt}

    def parse_result(self, output: str) -> SessionResult:
        data = _last_line_object(output)
        if data is None or not any(k in data for k in _RESULT_KEYS):
            return SessionResult()
        inner = data.get("fleet_result")
        fields: JsonDict = inner if isinstance(inner, dict) else data
        cost = fields.get("cost_usd", fields.get("total_cost_usd"))
        is_error = fields.get("is_error")
        return SessionResult(
            session_id=as_str(fields.get("session_id")),
            cost_usd=as_float(cost),
            input_tokens=as_int(fields.get("input_tokens")),
            output_tokens=as_int(fields.get("output_tokens")),
            is_error=is_error if isinstance(is_error, bool) else None,
            message=as_str(fields.get("message")),
        )


def _last_line_object(output: str) -> JsonDict | None:
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        data = json.loads(lines[-1])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
