"""Approve or reject an agent's branch tip for the merge queue (docs/delivery.md "Human review"):
the one implementation behind `fleet approve`/`fleet reject` (commands/review.py) and the
dashboard's Approve/Reject buttons (ui/app.py).

Both record who and when, for the branch tip reviewed, in the agent's record
(`delivery.approved` / `delivery.rejected`), under the fleet lock; an approval holds for that
tip only. Reject also resumes the session with the message (one reconcile pass for that
agent alone), so the agent gets it at once.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import FleetError
from ..locking.fleet_lock import fleet_lock
from ..observe.gitrepo import GitRepo
from ..observe.snapshot import fleet_home, state_store
from ..store.records import FAILED, now_iso

if TYPE_CHECKING:
    from ..engines.executor import Outcome
    from ..spec.loader import LoadedFleet


@dataclass
class Reviewed:
    agent: str
    sha: str
    by: str
    outcomes: list[Outcome] = field(default_factory=list)  # reject: the pass that resumed the session


def reviewer(given: str | None) -> str:
    if given:
        return given
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def branch_tip(loaded: LoadedFleet, repo: GitRepo, name: str) -> str:
    agent = loaded.agent(name)
    if agent is None:
        raise FleetError(f"no declared agent {name!r} in fleet {loaded.name}",
                         hint="agents: " + ", ".join(a.name for a in loaded.agents))
    if loaded.fleet.spec.delivery is None:
        raise FleetError(f"fleet {loaded.name} declares no spec.delivery", hint="approval is for the merge queue; "
                         "see docs/delivery.md")
    from ..engines import engine_for

    ref = engine_for(loaded, connect=False).branch_ref(agent)  # ray: the engine's copy of the remote branch
    try:
        return str(repo.git.rev_parse("--verify", f"{ref}^{{commit}}"))
    except Exception:  # noqa: BLE001 - git's own error says little more than this
        raise FleetError(f"agent {name} has no branch {agent.branch} yet", hint="review it after it has run") from None


def approve(loaded: LoadedFleet, name: str, *, by: str | None, command: str = "fleet approve") -> Reviewed:
    repo = GitRepo(loaded.repo)
    sha = branch_tip(loaded, repo, name)
    store = state_store(repo, loaded.name)
    who = reviewer(by)
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command=command):
        rec = store.load(name)
        if rec is None:
            raise FleetError(f"agent {name} has not run yet", hint="approve it after its run succeeded")
        rec.delivery = {**rec.delivery, "approved": {"by": who, "at": now_iso(), "sha": sha}}
        rec.set_condition("Approved", "True", "Approved", f"by {who} for {sha[:12]}")
        store.save(rec)
    return Reviewed(name, sha, who)


def reject(loaded: LoadedFleet, name: str, message: str, *, by: str | None,
           command: str = "fleet reject") -> Reviewed:
    from .converge import reconcile_once

    if not message.strip():
        raise FleetError("a rejection needs a message", hint="say what the agent should change")
    repo = GitRepo(loaded.repo)
    sha = branch_tip(loaded, repo, name)
    store = state_store(repo, loaded.name)
    who = reviewer(by)
    with fleet_lock(fleet_home(repo), loaded.name, timeout=None, command=command):
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
    done = Reviewed(name, sha, who)
    if rec.session_id:
        done.outcomes = list(reconcile_once(loaded, targets=[name], command=command).outcomes)
    return done
