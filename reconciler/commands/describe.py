"""`fleet describe FILE NAME`: everything fleet knows about one agent, like `kubectl describe`."""
from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..act.lifecycle import LOG_TAIL_BYTES, read_log_tail
from ..control.status_rows import fleet_status
from ..errors import EXIT_OK, FleetError
from ..observe.gitrepo import GitRepo
from ..observe.progress import last_lines
from ..observe.snapshot import state_store
from ..plan.status import human_age
from ..render.session_log import render_text
from ..spec.loader import load_fleet


def run(*, file: str, name: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    row = next((r for r in fleet_status(loaded).agents if r.agent == name), None)
    if row is None:
        raise FleetError(f"no agent {name!r} in fleet {loaded.name}",
                         hint="agents: " + ", ".join(a.name for a in loaded.agents))
    store = state_store(GitRepo(loaded.repo), loaded.name)
    log_text = read_log_tail(store.log_path(name)) or ""
    tail = last_lines(log_text, 15)
    if output == "json":
        console.print(json.dumps({**asdict(row), "log_tail": tail}, indent=2, sort_keys=True), markup=False,
                      soft_wrap=True)
        return EXIT_OK
    fields = [("Name", row.agent), ("Fleet", loaded.name), ("Phase", row.phase), ("Sync", row.sync),
              ("Reason", row.reason or "-"), ("Tier", f"{row.tier} ({row.runtime}, model {row.model or '-'})"),
              ("Branch", row.branch or "-"), ("Worktree", row.worktree or "-"),
              ("Dirty files", _n(row.dirty)), ("Commits ahead", _n(row.ahead)), ("PID", row.pid or "-"),
              ("Session", row.session_id or "-"), ("Started", row.started_at or "-"),
              ("Finished", row.finished_at or "-"), ("Exit code", _n(row.exit_code)),
              ("Attempts", row.attempts), ("Idle", human_age(row.idle_seconds)),
              ("Cost", f"${row.cost_usd:.4f}"), ("Spec hash", row.spec_hash or "-"),
              ("Observed generation", row.observed_generation or "-")]
    if row.delivery or row.behind_base:  # spec.delivery (docs/delivery.md)
        behind = f"BehindBase: {row.behind_base} commits" if row.behind_base else ""
        fields.append(("Delivery", "; ".join(p for p in (row.delivery, behind) if p)))
    for key, value in fields:
        console.print(f"[bold]{key + ':':<21}[/]{escape(str(value))}", soft_wrap=True)
    console.print("[bold]Conditions:[/]")
    for c in row.conditions:
        console.print(f"  {c['type']:<18} {c['status']:<8} {c['reason']:<16} {c['lastTransitionTime']}  "
                      f"{escape(c['message'])}", soft_wrap=True)
    if row.last_gate:
        console.print(f"[bold]Last gate:[/] {escape(str(row.last_gate.get('name')))} "
                      f"exit {row.last_gate.get('exit_code')}")
        for line in str(row.last_gate.get("output", "")).splitlines()[-10:]:
            console.print(f"  {escape(line)}", soft_wrap=True)
    console.print(f"[bold]{'Last output of the stopped run' if row.last_output else 'Log tail'}:[/] "
                  f"(fleet logs {file} {name})")
    # rendered as `fleet logs` renders it; the whole tail, so a tool result finds its call
    rendered = render_text("\n".join(row.last_output)) if row.last_output else _rendered_tail(log_text)
    for shown in rendered[-15:]:
        console.print(Text("  ").append_text(shown), soft_wrap=True)
    return EXIT_OK


def _rendered_tail(log_text: str) -> list[Text]:
    if len(log_text.encode()) >= LOG_TAIL_BYTES:  # cut: its first line is a piece of one
        log_text = log_text.partition("\n")[2]
    return [line for line in render_text(log_text) if line.plain.strip()]


def _n(value: int | None) -> str:
    """Unknown or not applicable is `-`, as in the status table (never `None`, never 0)."""
    return "-" if value is None else str(value)
