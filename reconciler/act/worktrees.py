"""Creating and pruning agent worktrees (GitPython), with the ownership marker."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import git

from ..errors import FleetError
from ..observe.gitrepo import MARKER, PRUNE_INTENT, GitRepo, Worktree, branch_at_stake
from ..spec.desired import DesiredAgent
from ..store.records import now_iso, write_json_atomic
from .failpoints import failpoint, inside_add_env, remove_tree_halfway

if TYPE_CHECKING:
    from .archive import Archive


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
        failpoint("create-worktree:before-add")
        env = inside_add_env()  # {} unless that failpoint is armed
        if repo.branch_exists(agent.branch):
            repo.git.worktree("add", str(agent.worktree), agent.branch, env=env)
        else:
            repo.git.worktree("add", "-b", agent.branch, str(agent.worktree), agent.base, env=env)
    except git.GitCommandError as exc:
        raise FleetError(f"cannot create worktree {agent.worktree}: {exc.stderr.strip()}",
                         hint="see `git worktree list`; a directory or branch may be in the way") from None
    failpoint("create-worktree:inside-add")  # only reached when git had no file to check out
    failpoint("create-worktree:after-add")
    admin = _admin_dir(agent.worktree)
    marker = {"fleet": fleet, "repo": str(repo.common_dir), "agent": agent.name, "branch": agent.branch,
              "created": now_iso()}
    (admin / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    failpoint("create-worktree:after-marker")
    return agent.worktree


def _admin_dir(path: Path) -> Path:
    """The worktree's git admin dir, from the `gitdir:` line of its .git file."""
    text = (path / ".git").read_text().strip()
    return Path(text.removeprefix("gitdir:").strip()).resolve()


def remove_worktree(repo: GitRepo, wt: Worktree | None, branch: str | None, *, base: str,
                    archived: bool = False, archive: Archive | None = None) -> None:
    """Remove a worktree and/or its branch.

    Re-checks what is at stake right before acting (the tree may have changed since
    the plan); only an archive that holds all of it allows removing a dirty tree.
    Once the check passed, the intent (`PRUNE_INTENT`, with `archive`) is written into
    the admin dir before git deletes anything: a crash in the removal leaves it there,
    and the next pass finishes the removal if what is left is what was checked
    (`GitRepo.at_stake` judges such a tree by what it left).
    """
    stake = repo.at_stake(wt, base) if wt is not None else branch_at_stake(repo, branch or "", base)
    if not stake.safe and not (archived and stake.archivable):
        raise FleetError(f"refusing to prune {wt.path if wt else branch}: {stake.summary()}", exit_code=3)
    finishing = wt is not None and wt.pruning is not None
    try:
        if wt is not None and wt.admin_dir is not None and not finishing and wt.admin_dir.is_dir():
            write_json_atomic(wt.admin_dir / PRUNE_INTENT, {"archive": archive.ref if archive else None,
                                                            "commit": archive.commit if archive else None,
                                                            "checked": now_iso()})
        failpoint("prune:before-remove")
        if wt is not None and wt.path.is_dir():
            if finishing:
                _relink(wt)
            remove_tree_halfway(wt.path)  # only when the failpoint prune:inside-remove is armed
            # finishing: git's own check would count the files already deleted as changes
            repo.git.worktree("remove", *(["--force"] if archived or finishing else []), str(wt.path))
        elif wt is not None:  # its directory is gone: drop just its entry, not every stale one
            repo.git.worktree("remove", str(wt.path))
        failpoint("prune:after-remove")
        if branch and repo.branch_exists(branch):
            repo.git.branch("-D", branch)
        failpoint("prune:after-branch-delete")
    except git.GitCommandError as exc:
        if wt is not None and wt.admin_dir is not None and not finishing and "failed to delete" not in exc.stderr:
            # git refused before deleting anything (its checks come first): no removal began
            (wt.admin_dir / PRUNE_INTENT).unlink(missing_ok=True)
        raise FleetError(f"cannot prune {wt.path if wt else branch}: {exc.stderr.strip()}", exit_code=3) from None


def _relink(wt: Worktree) -> None:
    """Put back the tree's `.git` file if the interrupted removal deleted it: `git worktree
    remove` refuses a tree without one (and any git run there would find the enclosing repo)."""
    gitfile = wt.path / ".git"
    if wt.admin_dir is not None and not gitfile.exists():
        gitfile.write_text(f"gitdir: {wt.admin_dir}\n")
