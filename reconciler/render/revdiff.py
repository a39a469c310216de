"""A SpecDiff (`fleet diff --base-rev REV`) as a table, stable JSON, or a pull-request comment."""
from __future__ import annotations

import difflib
import html
import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..plan.revdiff import ADDED, CHANGED, REMOVED, AgentChange, Change, SpecDiff
from . import markdown as md

_SYMBOL = {ADDED: "+", REMOVED: "-", CHANGED: "~"}
_STYLE = {ADDED: "green", REMOVED: "red", CHANGED: "yellow"}
_WIDTH = 100  # longest value shown inline; longer ones are cut (JSON has them whole)


def summary_line(diff: SpecDiff) -> str:
    if not diff.has_changes:
        return f"No spec changes since {diff.rev}."
    s = diff.summary()
    agents = [f"{s['agentsAdded']} added", f"{s['agentsRemoved']} removed",
              f"{s['agentsChanged']} changed" + (f" ({s['agentsRerun']} re-run)" if s["agentsRerun"] else "")]
    return (f"Spec changes since {diff.rev}: agents {', '.join(agents)}; "
            f"{s['settingsChanged']} setting(s) changed.")


def to_json(diff: SpecDiff) -> str:
    return json.dumps(diff.to_json(), indent=2, sort_keys=True)


def print_table(diff: SpecDiff, console: Console) -> None:
    commit = f" ({diff.commit[:10]})" if diff.commit else ""
    console.print(f"[bold]fleet {escape(diff.fleet)}[/]: {escape(diff.file)} against {escape(diff.rev)}{commit}")
    for note in diff.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}")
    if diff.settings:
        console.print("\n  settings")
        for c in diff.settings:
            _print_change(console, c, indent=4)
    if diff.agents:
        console.print("\n  agents")
        width = max(len(a.name) for a in diff.agents)
        for a in diff.agents:
            style = _STYLE[a.op]
            console.print(f"    [{style}]{_SYMBOL[a.op]} {escape(a.name):<{width}}[/]  {escape(_agent_note(a))}",
                          soft_wrap=True)
            for c in a.changes:
                _print_change(console, c, indent=8)
    console.print()
    console.print(f"[bold]{escape(summary_line(diff))}[/]")


def _print_change(console: Console, c: Change, *, indent: int) -> None:
    pad = " " * indent
    style = _STYLE[c.op]
    console.print(f"{pad}[{style}]{_SYMBOL[c.op]} {escape(c.path)}[/]: {escape(_values(c))}", soft_wrap=True)
    for line in _text_diff(c):
        console.print(f"{pad}    [dim]{escape(line)}[/]", soft_wrap=True)


def _agent_note(a: AgentChange) -> str:
    tier = f"tier {a.tier}"
    if a.op == ADDED:
        return f"{tier}: new agent (worktree and session created on apply)"
    if a.op == REMOVED:
        return f"{tier}: no longer declared (session stopped; worktree pruned only if no work is at stake)"
    if a.rerun:
        return f"{tier}: session spec changed ({a.old_hash} -> {a.new_hash}): a running session is replaced"
    return f"{tier}: policy changed only; a running session is left alone"


def _values(c: Change) -> str:
    if c.op == ADDED:
        return _short(c.new)
    if c.op == REMOVED:
        return f"{_short(c.old)} (removed)"
    if _multiline(c):
        return "text changed:"
    return f"{_short(c.old)} -> {_short(c.new)}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _WIDTH else text[:_WIDTH - 1] + "…"


def _multiline(c: Change) -> bool:
    return c.op == CHANGED and isinstance(c.old, str) and isinstance(c.new, str) and ("\n" in c.old or "\n" in c.new)


def _text_diff(c: Change) -> list[str]:
    if not _multiline(c):
        return []
    return [line.rstrip("\n") for line in difflib.unified_diff(
        c.old.splitlines(), c.new.splitlines(), "before", "after", lineterm="", n=1)][2:]


def to_markdown(diff: SpecDiff) -> str:
    """A PR comment; the first line is a stable marker for updating it in place."""
    commit = f" ({md.code(diff.commit[:10])})" if diff.commit else ""
    head = [f"<!-- fleet-spec-diff:{diff.fleet} -->",
            f"### fleet {md.code(diff.fleet)}: spec changes in {md.code(diff.file)} since {md.code(diff.rev)}{commit}",
            "", f"**{md.text(summary_line(diff))}**", ""]
    head += [f"> [!NOTE]\n> {md.text(n)}\n" for n in diff.notes]
    removed = diff.agents_with(REMOVED)
    if removed:
        head += ["> [!CAUTION]",
                 (f"> **{len(removed)} agent(s) removed:** their sessions are stopped, and their worktrees and "
                  "branches pruned unless work is at stake (then the prune is blocked):"),
                 "> " + ", ".join(md.code(a.name) for a in removed), ""]
    if diff.settings:
        head += ["| | setting | before | after |", "|---|---|---|---|"]
        head += [f"| {_SYMBOL[c.op]} | {md.code(c.path)} | {_cell(c.old, c.op != ADDED)} | "
                 f"{_cell(c.new, c.op != REMOVED)} |" for c in diff.settings]
        head.append("")
    blocks: list[list[str]] = []
    simple = diff.agents_with(ADDED) + removed
    for i, a in enumerate(simple):  # one list, then a collapsed block per changed agent
        blocks.append([f"- **{a.op}** {md.code(a.name)}: {md.text(_agent_note(a))}"] + ([""] if i == len(simple) - 1
                                                                                      else []))
    for a in diff.agents_with(CHANGED):
        block = ["<details>", f"<summary>~ {md.code(a.name)}: {html.escape(_agent_note(a))}</summary>", "",
                 "| | field | before | after |", "|---|---|---|---|"]
        block += [f"| {_SYMBOL[c.op]} | {md.code(c.path)} | {_cell(c.old, c.op != ADDED, _multiline(c))} | "
                  f"{_cell(c.new, c.op != REMOVED, _multiline(c))} |" for c in a.changes]
        for c in a.changes:
            if _multiline(c):
                block += ["", f"{md.code(c.path)}:", "", *md.fence("\n".join(_text_diff(c)), "diff")]
        blocks.append(block + ["", "</details>", ""])
    if blocks:
        head += ["#### Agents", ""]
    out = md.fit(head, blocks, what="agents", more=f"run `fleet diff --base-rev {diff.rev} -o json` for all")
    return "\n".join(out) + "\n"


def _cell(value: Any, present: bool, text: bool = False) -> str:
    if not present:
        return ""
    if text:
        return "(text, see below)"
    return md.code(_short(value))
