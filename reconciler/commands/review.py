"""`fleet review NAME`, `fleet approve NAME`, `fleet reject NAME -m MSG` (docs/delivery.md "Human review").

Review prints the packet (observe/review.py): final message, commits, diffstat against the
delivery target, gate results, cost, conditions. Approve and reject are control/review_actions.py
(shared with the dashboard): they record who and when, for the branch tip reviewed; reject
also resumes the session with the message.
"""
from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape

from ..control import review_actions
from ..errors import EXIT_OK, FleetError
from ..observe.gitrepo import GitRepo
from ..observe.model import Packet
from ..observe.review import review_packet
from ..observe.snapshot import state_store
from ..plan.review import packet_markdown
from ..spec.loader import load_fleet


def run(*, file: str, name: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    agent = loaded.agent(name)
    ref = None
    if agent is not None:
        from ..engines import engine_for

        ref = engine_for(loaded, connect=False).branch_ref(agent)  # ray: the engine's copy of the remote branch
    packet = review_packet(loaded, repo, state_store(repo, loaded.name), name, ref=ref)
    if packet is None:
        raise FleetError(f"no agent {name!r} in fleet {loaded.name}",
                         hint="agents: " + ", ".join(a.name for a in loaded.agents))
    if output == "json":
        console.print(json.dumps(packet.to_json(), indent=2, sort_keys=True), markup=False, soft_wrap=True)
    elif output == "markdown":
        console.print(packet_markdown(packet), markup=False, highlight=False, soft_wrap=True)
    else:
        _terminal(packet, console)
    return EXIT_OK


def _terminal(p: Packet, console: Console) -> None:
    console.print(f"[bold]Review of {escape(p.agent)}[/] (fleet {escape(p.fleet)}, phase {p.phase or '-'})")
    console.print(f"[bold]Branch:[/] {escape(p.branch)} against {escape(p.against)}; cost ${p.cost_usd:.4f}")
    if p.delivery.get("state"):
        console.print(f"[bold]Delivery:[/] {escape(str(p.delivery['state']))}")
    for key in ("approved", "rejected"):
        if isinstance(p.delivery.get(key), dict):
            d = p.delivery[key]
            console.print(f"[bold]{key.capitalize()}:[/] by {escape(str(d.get('by')))} at {d.get('at')}"
                          + (f": {escape(str(d['message']))}" if d.get("message") else ""))
    console.print("[bold]Final message:[/]")
    for line in (p.final_message or "(none)").splitlines()[:40]:
        console.print(f"  {escape(line)}", soft_wrap=True)
    console.print(f"[bold]Commits ({len(p.commits)}):[/]")
    for commit in p.commits:
        console.print(f"  {escape(commit)}", soft_wrap=True)
    console.print(f"[bold]Diffstat against {escape(p.against)}:[/]")
    for line in (p.diffstat or "(no changes)").splitlines():
        console.print(f"  {escape(line)}", soft_wrap=True)
    cond = p.gates.get("condition") or {}
    console.print(f"[bold]Gates:[/] {escape(', '.join(p.gates.get('declared') or []) or '(none)')}: "
                  f"{escape(str(cond.get('reason', 'not run')))}"
                  + (f"; delivery gates {escape(', '.join(p.gates['delivery']))}" if p.gates.get("delivery") else ""))
    console.print("[bold]Conditions:[/]")
    for c in p.conditions:
        console.print(f"  {c['type']:<18} {c['status']:<8} {c['reason']:<18} {escape(c.get('message', ''))}",
                      soft_wrap=True)
    console.print(f"\nfleet approve {escape(p.agent)}   |   fleet reject {escape(p.agent)} -m \"what to change\"")


def approve(*, file: str, name: str, by: str | None, console: Console, err: Console) -> int:
    done = review_actions.approve(load_fleet(file), name, by=by)
    console.print(f"approved {name} at {done.sha[:12]} by {done.by}; the next `fleet apply` queues it")
    return EXIT_OK


def reject(*, file: str, name: str, message: str, by: str | None, console: Console, err: Console) -> int:
    from ..render.plan import outcome_line

    done = review_actions.reject(load_fleet(file), name, message, by=by)
    console.print(f"rejected {name} at {done.sha[:12]} by {done.by}")
    for outcome in done.outcomes:
        console.print(outcome_line(outcome), soft_wrap=True)
    return EXIT_OK
