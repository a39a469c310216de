"""A plan as a terraform-like table, stable JSON, or a pull-request comment.

The table is drawn by Rich (`print_table`) or, where Rich would print nothing but the
characters (a pipe: render/terminal.py `plain_stdout`), as the same text without Rich
(`table_lines`): `fleet diff` in CI then does not import Rich at all.
"""
from __future__ import annotations

import html
import json
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..plan.actions import (
    BLOCKED,
    CREATE_WORKTREE,
    DELIVER,
    MERGE,
    PRUNE,
    PUSH,
    REPLACE,
    RESUME,
    RUN_GATE,
    SPAWN,
    STOP,
    WAIT,
    Action,
    Plan,
)
from . import markdown as md

if TYPE_CHECKING:
    from rich.console import Console

    from ..engines.executor import Outcome

_STYLE = {CREATE_WORKTREE: "green", SPAWN: "green", RESUME: "yellow", RUN_GATE: "yellow",
          REPLACE: "magenta", STOP: "red", PRUNE: "red", WAIT: "dim", BLOCKED: "bold red",
          MERGE: "cyan", DELIVER: "cyan", PUSH: "cyan"}
_SUMMARY = ((CREATE_WORKTREE, "worktree(s) to create"), (SPAWN, "to spawn"), (RESUME, "to resume"),
            (REPLACE, "to replace"), (STOP, "to stop"), (RUN_GATE, "gate(s) to run"),
            (PRUNE, "to prune"), (WAIT, "waiting"), (BLOCKED, "blocked"), (MERGE, "to merge"),
            (DELIVER, "delivery verdict(s) to record"), (PUSH, "to push"))


def summary_line(plan: Plan) -> str:
    if not plan.has_changes:
        return f"No changes. Fleet {plan.fleet} matches its spec."
    counts = plan.counts()
    return "Plan: " + ", ".join(f"{counts[k]} {label}" for k, label in _SUMMARY if counts.get(k)) + "."


def print_table(plan: Plan, console: Console) -> None:
    from rich.markup import escape

    width = max((len(a.agent) for a in plan.actions), default=0)
    for a in plan.actions:
        style = _STYLE[a.kind]
        console.print(f"  [{style}]{a.symbol:>3} {a.kind:<15}[/] {escape(a.agent):<{width}}  {escape(a.reason)}",
                      soft_wrap=True)
        for line in _detail_lines(a):
            console.print(f"        [dim]{escape(line)}[/]" if a.kind != BLOCKED else f"        {escape(line)}")
    for note in plan.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}")
    if plan.actions or plan.notes:
        console.print()
    style = "bold red" if plan.blocked else "bold"
    console.print(f"[{style}]{escape(summary_line(plan))}[/]")


def table_lines(plan: Plan) -> list[tuple[str, bool]]:
    """`print_table`'s lines as plain text, each with whether Rich prints it soft-wrapped
    (never wrapped) or wraps it at the console's width: the same text, line for line
    (tests/test_render_plan_plain.py compares the two)."""
    width = max((len(a.agent) for a in plan.actions), default=0)
    lines: list[tuple[str, bool]] = []
    for a in plan.actions:
        lines.append((f"  {a.symbol:>3} {a.kind:<15} {a.agent:<{width}}  {a.reason}", True))
        lines += [(f"        {line}", False) for line in _detail_lines(a)]
    lines += [(f"  note: {note}", False) for note in plan.notes]
    if plan.actions or plan.notes:
        lines.append(("", False))
    lines.append((summary_line(plan), False))
    return lines


def _detail_lines(a: Action) -> list[str]:
    d = a.details
    lines = [f"file: {f}" for f in d.get("files", [])]
    lines += [f"commit: {c}" for c in d.get("commits", [])]
    lines += [f"stash: {s}" for s in d.get("stashes", [])]
    lines += [f"in progress: {op}" for op in d.get("inProgress", [])]
    lines += [f"process: {p}" for p in d.get("processes", [])]
    lines += [f"nested repo: {r}" for r in d.get("nestedRepos", [])]
    lines += [f"protected ignored file: {p} (gc.protectIgnored; move it out of the tree)"
              for p in d.get("protectedIgnored", [])]
    if d.get("locked"):
        lines.append("locked: git worktree lock (unlock it yourself if it may go)")
    if ignored := d.get("ignored"):
        some = ", ".join(ignored["some"]) + (", ..." if ignored["count"] > len(ignored["some"]) else "")
        lines.append(f"ignored: {ignored['count']} file(s), {ignored['bytes']} bytes, deleted unarchived: {some}")
    if d.get("keptBranch"):
        lines.append(f"kept: branch {d['keptBranch']} (checked out in the tree, not the fleet's)")
    if a.kind == BLOCKED and d.get("worktree"):
        lines.append(f"worktree: {d['worktree']} (branch {d.get('branch')})")
    return lines


def to_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=True)


def to_markdown(plan: Plan) -> str:
    """A PR comment. The first line is a stable marker so bots can update it in place.

    Deterministic for a given plan (no times, no colours), so re-posting an unchanged
    plan edits nothing. Blocked actions come first, in a warning, with the work at
    stake; then one collapsed block per agent (blocked ones open).
    """
    head = [f"<!-- fleet-plan:{plan.fleet} -->", f"### fleet {md.code(plan.fleet)}: plan", "",
            f"**{md.text(summary_line(plan))}**", ""]
    if plan.blocked:
        head += ["> [!WARNING]", "> **Blocked:** fleet refuses these actions to avoid losing work:"]
        for a in plan.blocked:
            head.append(f"> - {md.code(a.agent)}: {md.text(a.reason)}")
            head += [f">   - {md.text(line)}" for line in _detail_lines(a)]
        head.append("")
    by_agent: OrderedDict[str, list[Action]] = OrderedDict()
    for a in plan.actions:
        by_agent.setdefault(a.agent, []).append(a)
    blocks: list[list[str]] = []
    for agent, actions in by_agent.items():
        blocked = any(a.kind == BLOCKED for a in actions)
        kinds = ", ".join(f"{a.symbol} {a.kind}" for a in actions)
        block = ["<details open>" if blocked else "<details>",
                 f"<summary>{md.code(agent)}: {html.escape(kinds)}{' <b>(blocked)</b>' if blocked else ''}</summary>",
                 ""]
        for a in actions:
            tier = f" (tier {md.code(a.tier)})" if a.tier else ""
            block.append(f"- {md.code(f'{a.symbol} {a.kind}')}{tier}: {md.text(a.reason)}")
            block += [f"  - {md.text(line)}" for line in _detail_lines(a)]
        blocks.append(block + ["", "</details>", ""])
    out = md.fit(head, blocks, what="agents", more="run `fleet diff -o json` for the full plan")
    if plan.notes:
        out += ["", *[f"- note: {md.text(n)}" for n in plan.notes]]
    return "\n".join(out) + "\n"


def outcome_line(outcome: Outcome) -> str:
    """One executed action, as apply and delete print it (Rich markup)."""
    from rich.markup import escape

    a = outcome.action
    if a.kind == BLOCKED or outcome.blocked:
        mark = "[bold red]blocked[/]"
    elif a.kind == WAIT:
        mark = "[dim]waiting[/]"
    elif outcome.gate_failed:  # the gate ran (the action did its job); the agent's work did not pass
        mark = "[bold red]gate failed[/]"
    else:
        mark = "[green]ok[/]" if outcome.ok else "[bold red]failed[/]"
    line = f"  {a.symbol:>3} {a.kind:<15} {escape(a.agent)}: {mark} {escape(outcome.message)}"
    # what to do, as every other error prints it: a failed action's hint was dropped before
    return f"{line}\n        hint: {escape(outcome.hint)}" if outcome.hint and not outcome.ok else line
