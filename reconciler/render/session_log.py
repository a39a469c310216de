"""A session log as a person reads it: `fleet logs NAME` and `fleet describe`'s log tail.

The log (docs/sessions.md) is fleet's run markers and gate runs around each CLI's own
output. The CLIs' JSON events become one line per thing that happened:

- claude `--output-format stream-json --verbose`: the agent's messages, each tool call
  (`$ command`, `edit FILE`, ...) with a short result, the final result line (turns, cost,
  time); also the single result object of `--output-format json`;
- codex `exec --json`: agent messages, commands with their exit code and output, file
  changes, errors, each turn's tokens;
- `--- fleet: start|resume ...` markers become separators (a `start` after the first run
  is a restart), `--- fleet gate ...` lines a gate's verdict with its output indented.

Anything else (stderr, a `command` agent's own lines, JSON of another shape) is shown as
it is. The renderer reads one line at a time and keeps what it needs between lines (which
tool a result belongs to), so `fleet logs -f` renders as the session writes.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from ..act.gates import GATE_MARKER
from ..act.lifecycle import RUN_MARKER

RESULT_LINES = 3  # lines of a tool's output shown under its call
LINE_CHARS = 200  # a shown line is cut here (`--raw` has everything)

_MARKER = re.compile(r"^(?P<kind>\w[\w-]*) (?P<when>\S+): ?(?P<rest>.*)$")
_GATE = re.compile(r"^(?P<name>\S+): (?P<run>.*) (?P<verdict>passed|FAILED) \((?P<summary>.*)\)$")


def _cut(text: str, limit: int = LINE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(output: str, lines: int = RESULT_LINES) -> list[str]:
    """The first lines of a tool's output, and how many more there were."""
    rows = [r.rstrip() for r in output.strip("\n").splitlines()]
    rows = [r for r in rows if r.strip()] if len(rows) > lines else rows
    shown = [_cut(r) for r in rows[:lines]]
    if len(rows) > lines:
        shown.append(f"… {len(rows) - lines} more line(s)")
    return shown


def _unwrap_shell(command: str) -> str:
    """codex runs `/bin/bash -lc 'CMD'`: show CMD."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if len(words) == 3 and words[0].rsplit("/", 1)[-1] in ("bash", "sh", "zsh") and words[1] in ("-lc", "-c"):
        return words[2]
    return command


def _text_of(content: Any) -> str:
    """A tool result's text: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


@dataclass
class SessionLogRenderer:
    """Feed it the log's lines in order; each call returns the lines to show for one."""

    runs: int = 0
    in_gate: bool = False
    last_message: str = ""  # the agent's last message, which a result repeats
    calls: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # tool_use id -> (name, input)

    def feed(self, line: str) -> list[Text]:
        line = line.rstrip("\r\n")
        if line.startswith(GATE_MARKER):
            self.in_gate = True
            return [self._gate(line[len(GATE_MARKER):])]
        if line.startswith(RUN_MARKER):
            self.in_gate = False
            return self._run_marker(line[len(RUN_MARKER):])
        if self.in_gate:
            return [Text("  │ " + _cut(line), style="dim")]
        event = _event(line)
        if event is None:
            return [Text(line)]
        shown = self._event(event)
        return [Text(line)] if shown is None else shown

    # -- fleet's own lines -----------------------------------------------------------------

    def _run_marker(self, rest: str) -> list[Text]:
        match = _MARKER.match(rest)
        kind, when, detail = (match["kind"], match["when"], match["rest"]) if match else ("run", "", rest)
        self.runs += 1
        if kind == "start" and self.runs > 1:
            kind = "restart"
        head = Text(f"──── {kind} {when} ".rstrip() + " ────", style="bold magenta")
        return [head, Text("  " + _cut(detail, 160), style="dim")] if detail else [head]

    def _gate(self, rest: str) -> Text:
        match = _GATE.match(rest)
        if not match:
            return Text(f"▶ gate {rest}", style="bold")
        passed = match["verdict"] == "passed"
        return Text(f"▶ gate {match['name']} {'passed' if passed else 'FAILED'}: {match['run']} ({match['summary']})",
                    style="bold green" if passed else "bold red")

    # -- the CLIs' events ------------------------------------------------------------------

    def _event(self, e: dict[str, Any]) -> list[Text] | None:
        kind = e.get("type")
        if kind == "system":
            return self._system(e)
        if kind == "assistant":
            return self._assistant(e)
        if kind == "user":
            return self._user(e)
        if kind == "result":
            said = e.get("result")
            repeat = (not isinstance(said, str) or not said.strip() or said.strip() == self.last_message
                      or e.get("is_error"))
            return [self._result(e)] if repeat else [*self._message(str(said)), self._result(e)]
        if kind == "stream_event":
            return []  # partial messages (--include-partial-messages): the whole one follows
        if isinstance(kind, str) and kind.startswith(("thread.", "turn.", "item.")) or kind == "error":
            return self._codex(e)
        return None

    def _system(self, e: dict[str, Any]) -> list[Text]:
        if e.get("subtype") == "init":
            model = e.get("model") or "-"
            return [Text(f"session {e.get('session_id') or '-'} · model {model} · cwd {e.get('cwd') or '-'}",
                         style="dim")]
        if e.get("subtype") == "api_retry":
            return [Text(f"! API retry {e.get('attempt', '?')}/{e.get('max_retries', '?')}: "
                         f"{e.get('error_status') or e.get('error') or ''}".rstrip(": "), style="yellow")]
        return [Text(f"system: {e.get('subtype') or '-'}", style="dim")]

    def _assistant(self, e: dict[str, Any]) -> list[Text]:
        message = _dict(e.get("message"))
        out: list[Text] = []
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                out.extend(self._message(str(block["text"])))
            elif block.get("type") == "thinking" and str(block.get("thinking", "")).strip():
                out.append(Text("✻ " + _cut(str(block["thinking"]).strip().splitlines()[0]), style="dim italic"))
            elif block.get("type") == "tool_use":
                name, args = str(block.get("name", "?")), block.get("input")
                args = args if isinstance(args, dict) else {}
                self.calls[str(block.get("id"))] = (name, args)
                out.append(_call(name, args))
        if e.get("error"):
            out.append(Text(f"✗ {e['error']}", style="red"))
        return out

    def _message(self, text: str) -> list[Text]:
        self.last_message = text.strip()
        lines = text.strip().splitlines()
        return [Text("● " + lines[0], style="bold"), *(Text("  " + rest) for rest in lines[1:])]

    def _user(self, e: dict[str, Any]) -> list[Text]:
        message = _dict(e.get("message"))
        content = message.get("content")
        if isinstance(content, str):
            return [Text("› " + _cut(content.strip()), style="cyan")]
        out: list[Text] = []
        for block in content or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                name, _args = self.calls.pop(str(block.get("tool_use_id")), ("?", {}))
                out.extend(_tool_result(name, block, e.get("tool_use_result")))
            elif block.get("type") == "text" and str(block.get("text", "")).strip():
                out.append(Text("› " + _cut(str(block["text"]).strip()), style="cyan"))
        return out

    @staticmethod
    def _result(e: dict[str, Any]) -> Text:
        parts = [str(e.get("subtype") or ("error" if e.get("is_error") else "done"))]
        if isinstance(e.get("num_turns"), int):
            parts.append(f"{e['num_turns']} turn(s)")
        cost = e.get("total_cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            parts.append(f"${cost:.4f}")
        if isinstance(e.get("duration_ms"), (int, float)):
            parts.append(f"{e['duration_ms'] / 1000:.1f}s")
        if e.get("is_error"):
            why = e.get("result") or "; ".join(str(x) for x in e.get("errors") or [])
            return Text(f"✗ result: {' · '.join(parts)}" + (f": {_cut(str(why))}" if why else ""), style="bold red")
        return Text(f"✓ result: {' · '.join(parts)}", style="bold green")

    def _codex(self, e: dict[str, Any]) -> list[Text]:
        kind = e.get("type")
        item = _dict(e.get("item"))
        if kind == "thread.started":
            return [Text(f"thread {e.get('thread_id') or '-'}", style="dim")]
        if kind == "turn.completed":
            usage = _dict(e.get("usage"))
            return [Text(f"✓ turn completed · {usage.get('input_tokens', '?')} tokens in, "
                         f"{usage.get('output_tokens', '?')} out", style="bold green")]
        if kind == "turn.failed":
            error = _dict(e.get("error"))
            return [Text(f"✗ turn failed: {_cut(str(error.get('message') or '-'))}", style="bold red")]
        if kind == "error":
            return [Text(f"✗ {_cut(str(e.get('message') or '-'))}", style="red")]
        if kind == "item.started" and item.get("type") == "command_execution":
            self.calls[str(item.get("id"))] = ("command", item)
            return [_call("Bash", {"command": _unwrap_shell(str(item.get("command", "")))})]
        if kind == "item.completed":
            return self._codex_item(item)
        return []  # turn.started, item.updated, other item.started: their completion says it

    def _codex_item(self, item: dict[str, Any]) -> list[Text]:
        kind = item.get("type")
        if kind == "agent_message":
            return self._message(str(item.get("text", "")))
        if kind == "reasoning":
            text = str(item.get("text", "")).strip()
            return [Text("✻ " + _cut(text.splitlines()[0]), style="dim italic")] if text else []
        if kind == "command_execution":
            out = [] if self.calls.pop(str(item.get("id")), None) else [
                _call("Bash", {"command": _unwrap_shell(str(item.get("command", "")))})]
            code = item.get("exit_code")
            failed = item.get("status") == "failed" or (isinstance(code, int) and code != 0)
            lines = _short(str(item.get("aggregated_output") or ""))
            head = f"exit {code}" if code is not None else str(item.get("status") or "")
            out.append(Text(f"  ⎿ {head}" + (f": {lines[0]}" if lines else ""), style="red" if failed else "dim"))
            out.extend(Text("    " + rest, style="dim") for rest in lines[1:])
            return out
        if kind == "file_change":
            changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
            return [Text(f"✎ {c.get('kind', 'change')} {c.get('path', '?')}", style="yellow") for c in changes]
        if kind == "mcp_tool_call":
            return [Text(f"⚙ {item.get('server', '?')}.{item.get('tool', '?')} ({item.get('status', '')})",
                         style="yellow")]
        if kind == "web_search":
            return [Text(f"⚙ web search: {_cut(str(item.get('query', '')))}", style="yellow")]
        if kind == "todo_list":
            todo = [t for t in item.get("items") or [] if isinstance(t, dict)]
            done = sum(1 for t in todo if t.get("completed"))
            return [Text(f"☐ plan: {done}/{len(todo)} done", style="dim")]
        if kind == "error":
            return [Text(f"! {_cut(str(item.get('message', '')))}", style="yellow")]
        return [Text(f"{kind}: {_cut(json.dumps(item, sort_keys=True))}", style="dim")]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("type"), str) else None


def _call(name: str, args: dict[str, Any]) -> Text:
    """One line for a tool call: what a person would type or see done."""
    path = args.get("file_path") or args.get("notebook_path") or args.get("path")
    if name == "Bash":
        command = str(args.get("command", "")).strip()
        first = command.splitlines()[0] if command else ""
        more = " …" if "\n" in command else ""
        return Text(f"$ {_cut(first)}{more}", style="bold yellow")
    if name in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
        verb = {"Write": "write", "NotebookEdit": "edit notebook"}.get(name, "edit")
        return Text(f"✎ {verb} {path}", style="yellow")
    if name == "Read":
        return Text(f"⚙ read {path}", style="yellow")
    if name in ("Glob", "Grep"):
        where = f" in {args['path']}" if args.get("path") else ""
        return Text(f"⚙ {name.lower()} {args.get('pattern', '')}{where}", style="yellow")
    if name == "TodoWrite":
        todos = args.get("todos")
        todos = todos if isinstance(todos, list) else []
        return Text(f"☐ plan: {len(todos)} item(s)", style="dim")
    if name in ("Task", "Agent"):
        return Text(f"⚙ subagent: {_cut(str(args.get('description') or args.get('prompt') or ''))}", style="yellow")
    brief = ", ".join(f"{k}={_cut(json.dumps(v), 60)}" for k, v in list(args.items())[:3])
    return Text(f"⚙ {name}({brief})", style="yellow")


def _tool_result(name: str, block: dict[str, Any], detail: Any) -> list[Text]:
    """A tool's result in a line or a few, under its call."""
    text = _text_of(block.get("content"))
    error = bool(block.get("is_error"))
    detail = detail if isinstance(detail, dict) else {}
    if error:
        lines = _short(text) or ["error"]
        return [Text(f"  ⎿ ✗ {lines[0]}", style="red"), *(Text("    " + r, style="red") for r in lines[1:])]
    if name in ("Write", "Edit", "MultiEdit") and (detail or text):
        return [Text(f"  ⎿ {_change_summary(name, detail, text)}", style="dim")]
    if name == "Bash":
        out = str(detail.get("stdout", text)) if detail else text
        err = str(detail.get("stderr", "")) if detail else ""
        lines = _short(out + ("\n" + err if err.strip() else "")) or ["(no output)"]
        return [Text(f"  ⎿ {lines[0]}", style="dim"), *(Text("    " + r, style="dim") for r in lines[1:])]
    lines = _short(text, 1)
    return [Text(f"  ⎿ {lines[0]}", style="dim")] if lines else []


def _change_summary(name: str, detail: dict[str, Any], text: str) -> str:
    patch = detail.get("structuredPatch")
    if isinstance(patch, list) and patch:
        lines = [str(x) for hunk in patch if isinstance(hunk, dict) for x in hunk.get("lines") or []]
        plus = sum(1 for x in lines if x.startswith("+"))
        minus = sum(1 for x in lines if x.startswith("-"))
        return f"+{plus} -{minus}"
    if detail.get("type") == "create" and isinstance(detail.get("content"), str):
        return f"created, {len(detail['content'].splitlines())} line(s)"
    return _cut(text.strip().splitlines()[0]) if text.strip() else "ok"


def render_text(text: str) -> list[Text]:
    """A whole log (or its tail) at once."""
    renderer = SessionLogRenderer()
    return [shown for line in text.splitlines() for shown in renderer.feed(line)]
