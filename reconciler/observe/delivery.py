"""Read what the merge queue plans from (observe/model.py `DeliveryFacts`): the target's tip,
and each agent branch against the target and base. Read-only git; a handful of calls per branch."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..spec.loader import LoadedFleet
from .gitcmd import GitCommandError
from .gitrepo import GitRepo
from .model import BranchFacts, DeliveryFacts, Observed
from .stake import DELIVERED_REFS  # refs/fleet/delivered/<fleet>/<agent>: a tip a squash/rebase delivered

if TYPE_CHECKING:
    from ..spec.desired import DesiredAgent


def delivered_ref(fleet: str, agent: str) -> str:
    return f"{DELIVERED_REFS}{fleet}/{agent}"


def observe_delivery(loaded: LoadedFleet, repo: GitRepo, observed: Observed,
                     branch_ref: Callable[[DesiredAgent], str] | None = None) -> DeliveryFacts | None:
    """`branch_ref`: where this repository has an agent's branch (the engine's `branch_ref`;
    default refs/heads/<branch>)."""
    delivery = loaded.fleet.spec.delivery
    if delivery is None:
        return None
    into, base = delivery.into, loaded.fleet.spec.base
    target = _tip(repo, f"refs/heads/{into}")
    remote = _tip(repo, f"refs/remotes/{delivery.push.remote}/{into}") if delivery.push else None
    holder = None
    main, linked = repo.worktrees()
    for wt in [w for w in (main, *linked) if w is not None]:
        if wt.branch == into and wt.scratch is None:
            holder = str(wt.path)
    facts = DeliveryFacts(into=into, target_tip=target, base_tip=_tip(repo, base), checked_out=holder,
                          remote_tip=remote)
    against = target or facts.base_tip
    per_agent = bool(delivery.push and delivery.pullRequest and delivery.pullRequest.perAgent)
    for agent in loaded.agents:
        obs = observed.agents.get(agent.name)
        tip = _tip(repo, branch_ref(agent) if branch_ref else f"refs/heads/{agent.branch}")
        if tip is None or obs is None or against is None:
            continue
        pending = (obs.record.delivery.get("pending") if obs.record else None) or {}
        landed = bool(target and pending.get("result") and _contains(repo, target, str(pending["result"])))
        facts.branches[agent.name] = BranchFacts(
            tip=tip, in_target=bool(target) and _contains(repo, against, tip),
            ahead=_count(repo, f"{against}..{tip}"), behind_target=_count(repo, f"{tip}..{against}"),
            behind_base=_count(repo, f"{tip}..{facts.base_tip}") if facts.base_tip else 0,
            changed=_changed(repo, against, tip), landed=landed,
            remote_tip=_tip(repo, f"refs/remotes/{delivery.push.remote}/{agent.branch}")
            if per_agent and delivery.push else None)
    return facts


def _tip(repo: GitRepo, ref: str) -> str | None:
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")) or None
    except GitCommandError:
        return None


def _contains(repo: GitRepo, tip: str, commit: str) -> bool:
    try:
        repo.git.merge_base("--is-ancestor", commit, tip)
    except GitCommandError:
        return False
    return True


def _count(repo: GitRepo, spec: str) -> int:
    try:
        return int(repo.git.rev_list("--count", spec, "--"))
    except (GitCommandError, ValueError):
        return 0


def _changed(repo: GitRepo, target: str, tip: str) -> tuple[str, ...]:
    """Files the branch changed since it left the target's line (three-dot diff)."""
    try:
        out = repo.git.diff("--name-only", "--no-renames", f"{target}...{tip}", "--")
    except GitCommandError:
        return ()
    return tuple(line for line in out.splitlines() if line)
