"""`fleet review NAME`, `fleet approve NAME`, `fleet reject NAME -m MSG` (docs/delivery.md "Human review").

Review prints the packet (observe/review.py): final message, commits, diffstat against the
delivery target, gate results, cost, conditions. Approve and reject record who and when, for
the branch tip reviewed, in the agent's record (`delivery.approved` / `delivery.rejected`),
under the fleet lock; an approval holds for that tip only. Reject also resumes the session
with the message (one reconcile pass for that agent alone).
"""
from __future__ import annotations

import getpass
import json
import os

from rich.console import Console
from rich.markup import escape

from ..errors import EXIT_OK, FleetError
from ..locking.fleet_lock import fleet_lock
from ..observe.gitrepo import GitRepo
from ..observe.model import Packet
from ..observe.review import review_packet
from ..observe.snapshot import fleet_home, state_store
from ..plan.review import packet_markdown
from ..spec.loader import LoadedFleet, load_fleet
from ..store.records import FAILED, now_iso


def reviewer(given: str | None) -> str:
    if given:
        return given
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run(*, file: str, name: str, output: str, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    packet = review_packet(loaded, repo, state_store(repo, loaded.name), name)
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


def _branch_tip(loaded: LoadedFleet, repo: GitRepo, name: str) -> str:
    agent = loaded.agent(name)
    if agent is None:
        raise FleetError(f"no declared agent {name!r} in fleet {loaded.name}",
                         hint="agents: " + ", ".join(a.name for a in loaded.agents))
    if loaded.fleet.spec.delivery is None:
        raise FleetError(f"fleet {loaded.name} declares no spec.delivery", hint="approval is for the merge queue; "
                         "see docs/delivery.md")
    try:
        return str(repo.git.rev_parse("--verify", f"refs/heads/{agent.branch}^{{commit}}"))
    except Exception:  # noqa: BLE001 - git's own error says little more than this
        raise FleetError(f"agent {name} has no branch {agent.branch} yet", hint="review it after it has run") from None


def approve(*, file: str, name: str, by: str | None, console: Console, err: Console) -> int:
    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    sha = _branch_tip(loaded, repo, name)
    store = state_store(repo, loaded.name)
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command="fleet approve"):
        rec = store.load(name)
        if rec is None:
            raise FleetError(f"agent {name} has not run yet", hint="approve it after its run succeeded")
        rec.delivery = {**rec.delivery, "approved": {"by": reviewer(by), "at": now_iso(), "sha": sha}}
        rec.set_condition("Approved", "True", "Approved", f"by {reviewer(by)} for {sha[:12]}")
        store.save(rec)
    console.print(f"approved {name} at {sha[:12]} by {reviewer(by)}; the next `fleet apply` queues it")
    return EXIT_OK


def reject(*, file: str, name: str, message: str, by: str | None, console: Console, err: Console) -> int:
    from ..control.converge import reconcile_once
    from ..render.plan import outcome_line

    loaded = load_fleet(file)
    repo = GitRepo(loaded.repo)
    sha = _branch_tip(loaded, repo, name)
    store = state_store(repo, loaded.name)
    who = reviewer(by)
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command="fleet reject"):
        rec = store.load(name)
        if rec is None:
            raise FleetError(f"agent {name} has not run yet", hint="nothing to reject")
        rec.delivery = {k: v for k, v in rec.delivery.items() if k not in ("approved",)}
        rec.delivery.update({"state": "Rejected", "sha": sha, "at": now_iso(),
                             "rejected": {"by": who, "at": now_iso(), "sha": sha, "message": message}})
        rec.set_condition("Approved", "False", "Rejected", f"by {who}: {message}")
        rec.set_condition("Rejected", "True", "Rejected", f"by {who}: {message}")
        if rec.session_id:
            rec.phase = FAILED
            rec.gate_feedback = (f"A reviewer ({who}) rejected your work as it stands: {message}\n\n"
                                 "Address this, commit, and finish.")
            rec.reason = f"Rejected by {who}: {message}; resuming the session with it"
        else:
            rec.reason = f"Rejected by {who}: {message}; not delivered"
        store.save(rec)
    console.print(f"rejected {name} at {sha[:12]} by {who}")
    if rec.session_id:
        result = reconcile_once(loaded, targets=[name], command="fleet reject")
        for outcome in result.outcomes:
            console.print(outcome_line(outcome), soft_wrap=True)
    return EXIT_OK
