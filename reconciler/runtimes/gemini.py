"""The `gemini` runtime: Gemini CLI in headless mode, resumable by session UUID.

Owns the gemini command lines and the reading of its `--output-format json` object
(pretty-printed over many lines) or, if a tier picks `stream-json`, its JSONL
`init`/`result` events. Checked against @google/gemini-cli 0.61.0 (see
docs/runtimes.md).

Gemini takes our UUID with `--session-id` and resumes it with `--resume UUID`; both
refuse a reused/unknown id (exit 42). Headless gemini also refuses an untrusted
folder (exit 55) unless the tier passes `--skip-trust` or the environment sets
GEMINI_CLI_TRUST_WORKSPACE=true: fleet worktrees are new folders, so they are untrusted.
"""
from __future__ import annotations

from ._logscan import JsonDict, as_int, as_str, json_dicts, last_line
from .base import SessionRequest, SessionResult

_JSON_KEYS = ("session_id", "response", "stats", "error")


class GeminiRuntime:
    name: str = "gemini"
    can_resume: bool = True
    executable: str = "gemini"

    def start_argv(self, req: SessionRequest) -> list[str]:
        return [self.executable, _prompt(req.prompt), "--session-id", req.session_id, *self._common(req)]

    def resume_argv(self, req: SessionRequest, message: str) -> list[str] | None:
        return [self.executable, _prompt(message), "--resume", req.session_id, *self._common(req)]

    def env(self, req: SessionRequest) -> dict[str, str]:
        return {}

    def parse_result(self, output: str) -> SessionResult:
        docs = list(json_dicts(output))
        final = next((d for d in reversed(docs) if _is_json_output(d)), None)
        if final is not None:
            return _from_json_output(final)
        if any(d.get("type") in ("init", "result") for d in docs):
            return _from_stream(docs)
        # Fatal start-up errors (untrusted folder, bad flag) come before any JSON.
        return SessionResult(message=last_line(output)) if output.strip() else SessionResult()

    @staticmethod
    def _common(req: SessionRequest) -> list[str]:
        model = ["-m", req.model] if req.model else []
        return [*model, "--output-format", "json", *req.args]


def _prompt(text: str) -> str:
    # `-p TEXT` is parsed as a flag when TEXT starts with "-"; the `=` form never is.
    return f"--prompt={text}"


def _is_json_output(data: JsonDict) -> bool:
    return "type" not in data and any(k in data for k in _JSON_KEYS)


def _from_json_output(data: JsonDict) -> SessionResult:
    error = data.get("error")
    stats = data.get("stats")
    models = stats.get("models") if isinstance(stats, dict) else None
    tokens = [m.get("tokens") for m in models.values() if isinstance(m, dict)] if isinstance(models, dict) else []
    rows = [t for t in tokens if isinstance(t, dict)]
    message = as_str(error.get("message")) if isinstance(error, dict) else as_str(data.get("response"))
    return SessionResult(
        session_id=as_str(data.get("session_id")),
        input_tokens=_sum(rows, "prompt"),
        output_tokens=_sum(rows, "candidates"),
        is_error=bool(error) if error is not None or "response" in data else None,
        message=message,
        extra={"usage_scope": "process"},
    )


def _from_stream(events: list[JsonDict]) -> SessionResult:
    init = next((e for e in reversed(events) if e.get("type") == "init"), {})
    result = next((e for e in reversed(events) if e.get("type") == "result"), {})
    stats = result.get("stats")
    stats = stats if isinstance(stats, dict) else {}
    status = result.get("status")
    error = result.get("error")
    return SessionResult(
        session_id=as_str(init.get("session_id")),
        input_tokens=as_int(stats.get("input_tokens")),
        output_tokens=as_int(stats.get("output_tokens")),
        is_error=(status == "error") if isinstance(status, str) else None,
        message=as_str(error.get("message")) if isinstance(error, dict) else None,
        extra={"usage_scope": "process"},
    )


def _sum(rows: list[JsonDict], key: str) -> int | None:
    values = [v for v in (as_int(r.get(key)) for r in rows) if v is not None]
    return sum(values) if values else None
