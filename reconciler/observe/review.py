"""A review packet (`fleet review`, a pull request's body): what a person needs to judge one
agent's work before it is delivered. Read-only: the state store, the session log and git."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..runtimes import get_runtime
from ..spec.loader import LoadedFleet
from ..store.records import StateStore
from .gitcmd import GitCommandError
from .gitrepo import GitRepo
from .model import Packet
from .progress import last_lines

_LOG_TAIL = 256 * 1024


def review_packet(loaded: LoadedFleet, repo: GitRepo, store: StateStore, name: str,
                  against: str | None = None, ref: str | None = None) -> Packet | None:
    """`against`: what the commits and diffstat are relative to (default: the delivery target,
    else base); a delivered agent's pull request shows its work against the PR's base.
    `ref`: where this repository has the agent's branch (the engine's `branch_ref`; default
    refs/heads/<branch>; under ray the engine's copy of the remote branch)."""
    agent = loaded.agent(name)
    rec = store.load(name)
    if agent is None and rec is None:
        return None
    branch = agent.branch if agent else (rec.branch if rec and rec.branch else loaded.fleet.branch_prefix + name)
    delivery = loaded.fleet.spec.delivery
    against = against or (delivery.into if delivery and repo.branch_exists(delivery.into) else loaded.fleet.spec.base)
    runtime = agent.tier.runtime if agent else (rec.runtime if rec else None)
    final = _final_message(store, name, runtime)
    commits, stat = [], ""
    head = ref or f"refs/heads/{branch}"
    if ref is not None or repo.branch_exists(branch):
        try:
            out = repo.git.log("--reverse", "--format=%h %s", f"{against}..{head}", "--")
            commits = [line for line in out.splitlines() if line]
            stat = repo.git.diff("--stat", f"{against}...{head}", "--")
        except GitCommandError:
            pass
    gates: dict[str, Any] = {}
    if rec is not None:
        gate_cond = next((asdict(c) for c in rec.conditions if c.type == "GatesPassed"), None)
        gates = {"declared": list(agent.gates) if agent else rec.gates, "condition": gate_cond,
                 "last": rec.last_gate, "delivery": list(delivery.gates) if delivery else []}
    return Packet(agent=name, fleet=loaded.name, branch=branch, against=against, phase=rec.phase if rec else None,
                  final_message=final, commits=commits, diffstat=stat, gates=gates,
                  cost_usd=rec.cost_usd if rec else 0.0,
                  conditions=[asdict(c) for c in rec.conditions] if rec else [],
                  delivery=dict(rec.delivery) if rec else {})


def _final_message(store: StateStore, name: str, runtime: str | None) -> str | None:
    path = store.log_path(name)
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - _LOG_TAIL))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return _message(text, runtime)


def _message(text: str, runtime: str | None) -> str | None:
    """The runtime's result message of the latest run (after act/lifecycle.py RUN_MARKER), else its last lines."""
    marker = text.rfind("--- fleet: ")
    run = text[marker:] if marker >= 0 else text
    if runtime:
        result = get_runtime(runtime).parse_result(run)
        if result.message:
            return result.message
    lines = last_lines(run, 5)
    return "\n".join(lines) if lines else None
