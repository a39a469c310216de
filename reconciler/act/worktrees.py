"""Creating and pruning agent worktrees (GitPython), with the ownership marker."""
from __future__ import annotations

import json
from pathlib import Path

import git

from ..errors import FleetError
from ..observe.gitrepo import MARKER, GitRepo, Worktree, branch_at_stake
from ..spec.desired import DesiredAgent
from ..store.records import now_iso


def ensure_excluded(repo: GitRepo) -> None:
    """List .fleet/ in .git/info/exclude so the main checkout stays clean (never .gitignore)."""
    exclude = repo.common_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.fleet/" not in lines:
        with exclude.open("a") as f:
            f.write(("\n" if lines and lines[-1] else "") + "# fleet state, logs, locks and worktrees\n/.fleet/\n")


def create_worktree(repo: GitRepo, agent: DesiredAgent, *, fleet: str, repair: str | None = None) -> Path:
    """`git worktree add` on the agent's branch and write the ownership markers.

    The branch is marked as this fleet's (`branch.<name>.fleetOwner`) before it is
    created, so a crash right after `git worktree add` leaves it recognisably ours.
    An existing branch of this fleet is checked out again, keeping its commits.
    `repair`: "missing" (the directory was deleted by hand: drop git's stale entry for
    it first) or "interrupted" (a previous apply died inside `git worktree add`; nothing
    ran there yet, so the half-made tree is removed; the branch is kept).
    """
    try:
        if repair == "missing":  # only this entry: `git worktree prune` would drop every missing one
            repo.git.worktree("remove", str(agent.worktree))
        elif repair == "interrupted":
            repo.git.worktree("remove", "--force", "--force", str(agent.worktree))
        agent.worktree.parent.mkdir(parents=True, exist_ok=True)
        repo.git.config(f"branch.{agent.branch}.fleetOwner", fleet)
        if repo.branch_exists(agent.branch):
            repo.git.worktree("add", str(agent.worktree), agent.branch)
        else:
            repo.git.worktree("add", "-b", agent.branch, str(agent.worktree), agent.base)
    except git.GitCommandError as exc:
        raise FleetError(f"cannot create worktree {agent.worktree}: {exc.stderr.strip()}",
                         hint="see `git worktree list`; a directory or branch may be in the way") from None
    admin = _admin_dir(agent.worktree)
    marker = {"fleet": fleet, "repo": str(repo.common_dir), "agent": agent.name, "branch": agent.branch,
              "created": now_iso()}
    (admin / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return agent.worktree


def _admin_dir(path: Path) -> Path:
    """The worktree's git admin dir, from the `gitdir:` line of its .git file."""
    text = (path / ".git").read_text().strip()
    return Path(text.removeprefix("gitdir:").strip()).resolve()


def remove_worktree(repo: GitRepo, wt: Worktree | None, branch: str | None, *, base: str,
                    archived: bool = False) -> None:
    """Remove a worktree and/or its branch.

    Re-checks what is at stake right before acting (the tree may have changed since
    the plan); only an archive that holds all of it allows removing a dirty tree.
    """
    stake = repo.at_stake(wt, base) if wt is not None else branch_at_stake(repo, branch or "", base)
    if not stake.safe and not (archived and stake.archivable):
        raise FleetError(f"refusing to prune {wt.path if wt else branch}: {stake.summary()}", exit_code=3)
    try:
        if wt is not None and wt.path.is_dir():
            repo.git.worktree("remove", *(["--force"] if archived else []), str(wt.path))
        elif wt is not None:  # its directory is gone: drop just its entry, not every stale one
            repo.git.worktree("remove", str(wt.path))
        if branch and repo.branch_exists(branch):
            repo.git.branch("-D", branch)
    except git.GitCommandError as exc:
        raise FleetError(f"cannot prune {wt.path if wt else branch}: {exc.stderr.strip()}", exit_code=3) from None
