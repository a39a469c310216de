"""What a run spent, read from what it left behind rather than from its result object.

A run killed mid-turn prints no result, and a running one has none yet; its usage is
still in its log (claude's stream-json `assistant` events, codex's `turn.completed`
usage, aider's `Cost:` lines) and, for claude, in its transcript, whose per-message
usage is final (the stream's `assistant` events carry the output count at the stream's
start). `run_usage` returns tokens per model and any USD figure the CLI printed; the
caller prices tokens (runtimes/pricing.py) with the fleet's overrides.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ._logscan import JsonDict, as_float, as_int, as_str, json_dicts, strip_ansi
from .pricing import Tokens

# `claude_code_version` from stream-json's init event: since which version a resumed
# run's total_cost_usd covers the whole conversation. 2.1.197 reports per process
# (checked), 2.1.332 per conversation (checked); versions in between are taken to be
# per process, which can only count too much, never too little.
CONVERSATION_COST_SINCE = (2, 1, 332)
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
# stderr lines worth an operator's eye: claude 2.1.332 prints `[claude-code:unrecognized_model] {"model": ...}`
# for a model id it has no entry for (it then prices it at a default rate)
_WARNING = re.compile(r"\b(deprecated|retired|will be removed|no longer supported)\b|^\[claude-code:[a-z_]+\]",
                      re.IGNORECASE)
_AIDER_COST = re.compile(r"Cost: \$(\d+(?:\.\d+)?) message, \$(\d+(?:\.\d+)?) session\.")


@dataclass
class RunUsage:
    """One run's spend as far as its traces tell."""

    by_model: dict[str, Tokens] = field(default_factory=dict)
    usd: float | None = None  # a figure the CLI printed itself (aider), else priced from by_model
    version: str | None = None  # the CLI's version, when it says (claude's init event)
    warnings: list[str] = field(default_factory=list)  # CLI warnings: retired model, deprecated flag
    seen: bool = False  # the run left any trace of talking to a model at all
    messages: dict[str, tuple[str, Tokens]] = field(default_factory=dict)  # claude: message id -> (model, tokens)

    def regroup(self) -> None:
        """by_model from `messages` (each message once, however many events carried it)."""
        self.by_model = {}
        for model, tokens in self.messages.values():
            self.by_model[model] = self.by_model.get(model, Tokens()) + tokens

    @property
    def tokens(self) -> int:
        return sum(t.total for t in self.by_model.values())


def run_usage(runtime: str, log_text: str, transcript_text: str | None = None) -> RunUsage:
    """The usage one run (`log_text` = that run's part of the log) left behind."""
    if runtime == "claude":
        return claude_usage(log_text, transcript_text)
    if runtime == "codex":
        return codex_usage(log_text)
    if runtime == "aider":
        return aider_usage(log_text)
    return RunUsage(warnings=cli_warnings(log_text))


def claude_usage(log_text: str, transcript_text: str | None = None) -> RunUsage:
    out = RunUsage(warnings=cli_warnings(log_text))
    messages: dict[str, tuple[str, Tokens]] = {}
    for event in json_dicts(log_text):
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            out.version = as_str(event.get("claude_code_version")) or out.version
            out.seen = True
        elif kind == "assistant":
            found = _claude_message(event)
            if found is not None:
                messages[found[0]] = found[1:]  # one message may come as several events: once each
                out.seen = True
    if transcript_text and messages:
        # the transcript has the final usage of the same messages (by id)
        for line in transcript_text.splitlines():
            if '"assistant"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            found = _claude_message(entry) if isinstance(entry, dict) else None
            if found is not None and found[0] in messages:
                messages[found[0]] = found[1:]
    out.messages = messages
    out.regroup()
    return out


def _claude_message(event: JsonDict) -> tuple[str, str, Tokens] | None:
    if event.get("type") != "assistant":
        return None
    message = event.get("message")
    if not isinstance(message, dict):
        return None
    ident, model, usage = as_str(message.get("id")), as_str(message.get("model")), message.get("usage")
    if ident is None or model is None or not isinstance(usage, dict) or model.startswith("<"):
        return None  # "<synthetic>": the CLI's own message, nothing billed
    return ident, model, Tokens(input=_int(usage, "input_tokens"), output=_int(usage, "output_tokens"),
                                cache_read=_int(usage, "cache_read_input_tokens"),
                                cache_write=_int(usage, "cache_creation_input_tokens"))


def claude_restored_total(transcript_text: str | None) -> float | None:
    """The conversation total a resumed claude starts from: its transcript's last `cost-state`
    (written when a process ends normally or by SIGTERM; not by SIGKILL). `--max-budget-usd`
    is compared with that total plus this process's spend."""
    total = None
    for line in (transcript_text or "").splitlines():
        if '"cost-state"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("type") == "cost-state":
            total = as_float(entry.get("totalCostUSD"))
    return total


def conversation_cost(version: str | None) -> bool:
    """True if this claude's resumed total_cost_usd covers the conversation (see above);
    an unknown version is the pinned one's (docs/runtimes.md)."""
    if version is None:
        return True
    match = _VERSION.match(version)
    if match is None:
        return True
    return tuple(int(g) for g in match.groups()) >= CONVERSATION_COST_SINCE


def codex_usage(log_text: str, model: str | None = None) -> RunUsage:
    """codex `--json`: `turn.completed` usage is the thread's running total; the last one counts."""
    out = RunUsage(warnings=cli_warnings(log_text))
    last: JsonDict | None = None
    for event in json_dicts(log_text):
        if event.get("type") == "thread.started":
            out.seen = True
        if event.get("type") == "turn.completed" and isinstance(event.get("usage"), dict):
            last = event["usage"]  # type: ignore[assignment]
    if last is not None:
        cached = _int(last, "cached_input_tokens")
        out.by_model[model or ""] = Tokens(input=max(0, _int(last, "input_tokens") - cached),
                                           output=_int(last, "output_tokens"), cache_read=cached)
        out.seen = True
    return out


def aider_usage(log_text: str) -> RunUsage:
    matches = _AIDER_COST.findall(strip_ansi(log_text))
    out = RunUsage(warnings=cli_warnings(log_text))
    if matches:
        out.usd, out.seen = as_float(float(matches[-1][1])), True
    return out


def cli_warnings(log_text: str, most: int = 5) -> list[str]:
    """Lines outside the JSON events that warn about the model or a flag (stderr)."""
    found: list[str] = []
    for line in strip_ansi(log_text).splitlines():
        text = line.strip()
        json_like = text.startswith("{") or (text.startswith("[") and not text.startswith("[claude-code:"))
        if not text or json_like or text.startswith("--- fleet:") or not _WARNING.search(text):
            continue
        if text not in found:
            found.append(text[:300])
    return found[-most:]


def _int(data: JsonDict, key: str) -> int:
    return as_int(data.get(key)) or 0
