"""`fleet restore` of a ray fleet: bring back what fleet kept of an agent's work on spec.remote.

A ray fleet's archives (a released or pruned clone's, under refs/fleet/archive/<fleet>/...)
and its fenced attempts' orphan refs (refs/fleet/attempts/..., remote.py "Fencing") live on
the remote, where the nodes pushed them. Restoring one never deletes or moves anything on
the remote and never overwrites anything here:

- the ref is fetched into this repository under the same name (create-only: a ref of that
  name here that names another commit is a refusal);
- an **archive** gives the agent its branch back **on the remote**, at the archived tip, with
  this fleet's owner ref (one atomic create-only push: refused if the branch exists), so
  `fleet apply` resumes the agent on a node from its committed work; and, here, the same as
  a local restore (act/restore.py): the branch at that tip and a worktree with the clone's
  files as they were (what was never committed is only there), at
  `<worktrees.root>/.restored/<agent>` (the agent's own path would block its ray session);
- an **orphan** (work a fenced attempt pushed after it was fenced) is given a branch of its
  own here, `<branch>-attempt-<N>`, for review: merge or cherry-pick what is wanted.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...act.archive import ARCHIVE_PREFIX, RETENTION, WORK, Archive
from ...act.restore import restore
from ...errors import FleetError
from ...observe.gitrepo import GitRepo
from ...observe.gittree import last_line, run_git
from ...spec.loader import LoadedFleet
from .remote import ATTEMPTS, Remote, kept_on_remote

RESTORED = ".restored"  # under worktrees.root: agent names start with a letter or digit (spec/names.py)


@dataclass(frozen=True)
class RemoteRestored:
    archive: Archive
    lines: list[str]
    next: str


def find(found: list[Archive], fleet: str, agent: str, which: str | None) -> Archive:
    """The archive or orphan of `agent` named `which` (its time stamp, attempt number or full ref),
    else the newest archive (an orphan only when named)."""
    mine = [a for a in found if a.agent == agent]
    if which:
        mine = [a for a in mine if which in (a.ref, a.ref.rsplit("/", 1)[1])]
    else:
        mine = [a for a in mine if a.ref.startswith(ARCHIVE_PREFIX + "/")]
    if not mine:
        known = sorted({a.agent for a in found})
        raise FleetError(f"no archive {which + ' ' if which else ''}of agent {agent!r} in fleet {fleet} on the remote",
                         hint=f"`fleet archives FILE` lists them (agents with archives: {', '.join(known) or 'none'})")
    return mine[-1]  # archive refs sort by their time stamp


def restore_from_remote(loaded: LoadedFleet, name: str, which: str | None) -> RemoteRestored:
    """Restore (see the module docstring); the caller holds the fleet lock."""
    repo = GitRepo(loaded.repo)
    remote, found = kept_on_remote(loaded)
    archive = find(found, loaded.name, name, which)
    declared = loaded.agent(name)
    branch = declared.branch if declared is not None else loaded.fleet.branch_prefix + name
    if archive.ref.startswith(ATTEMPTS + "/"):
        return _orphan(repo, remote, archive, branch)
    facts = _facts(remote, archive)
    tip = (facts.get("Branch") or [""])[0].rpartition(" ")[2] or (facts.get("Head") or [""])[0]
    if not tip:
        raise FleetError(f"archive {archive.ref} names no branch tip or HEAD to restore",
                         hint=f"look inside: git --git-dir={remote.cache} log --graph {archive.ref}")
    # every refusal before anything changes, here or on the remote
    if branch in remote.heads:
        raise FleetError(f"branch {branch} exists on the remote {remote.url}; fleet restore will not overwrite it",
                         hint=f"`fleet delete {loaded.path.name} {name} --archive` it first, or pass another archive")
    if repo.branch_exists(branch):
        raise FleetError(f"branch {branch} exists in {loaded.repo}; fleet restore will not overwrite it",
                         hint=f"delete or rename it first (git branch -m {branch} {branch}-old)")
    tree = loaded.worktrees_root / RESTORED / name
    if tree.exists() and any(tree.iterdir()):
        raise FleetError(f"{tree} exists and is not empty; move it away first")
    _fetch_here(repo, remote, archive)
    remote.create_branch(branch, tip)  # with the owner ref, create-only
    lines = [f"branch {branch} at {tip[:12]} on {remote.url} (owned by fleet {loaded.name})"]
    done = restore(repo, archive, fleet=loaded.name, branch=branch, worktree=tree, facts=facts)
    lines += [f"here: {line}" for line in done.lines]
    if done.worktree is not None and facts.get("Kind") != [RETENTION]:
        lines.append(f"files that were never committed are only in {done.worktree}: commit and push them to "
                     f"{branch} for the agent's next session to have them")
    then = ("`fleet apply` resumes it on a node from the restored branch" if declared is not None
            else f"declare agent {name} again and `fleet apply`: it takes over the branch")
    return RemoteRestored(archive, lines, then)


def _orphan(repo: GitRepo, remote: Remote, archive: Archive, branch: str) -> RemoteRestored:
    local = f"{branch}-attempt-{archive.ref.rsplit('/', 1)[1]}"
    if repo.branch_exists(local):
        raise FleetError(f"branch {local} exists in {repo.common_dir}; fleet restore will not overwrite it",
                         hint=f"delete or rename it first (git branch -m {local} {local}-old)")
    _fetch_here(repo, remote, archive)
    repo.git.branch(local, archive.commit)
    return RemoteRestored(archive, [f"branch {local} at {archive.commit[:12]}: the fenced attempt's work"],
                          f"review it (git log {branch}..{local}), merge or cherry-pick what is wanted into "
                          f"{branch}, then delete the ref on the remote (git push <remote> :{archive.ref})")


def _facts(remote: Remote, archive: Archive) -> dict[str, list[str]]:
    """The archive's `Fleet-*:` lines; for an archive made before ray archives had them, what its
    shape says: a snapshot's first parent is the clone's HEAD, a branch archive is the tip itself."""
    res = remote._git("log", "-1", "--format=%B", archive.commit)
    facts: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("Fleet-"):
            facts.setdefault(key[len("Fleet-"):], []).append(value.strip())
    if facts.get("Branch") or facts.get("Head"):
        return facts
    if archive.subject.startswith(("fleet archive of", "fleet retention archive of")):
        parents = remote._git("rev-list", "--parents", "-n", "1", archive.commit).stdout.split()[1:]
        kind = RETENTION if archive.subject.startswith("fleet retention") else WORK
        return {"Kind": [kind], "Head": parents[:1], "Worktree": ["(the clone on its node)"]}
    return {"Kind": [WORK], "Head": [archive.commit]}


def _fetch_here(repo: GitRepo, remote: Remote, archive: Archive) -> None:
    """The ref into this repository under its own name, from the fetch cache; create-only."""
    here = run_git(repo.common_dir, "rev-parse", "--verify", "--quiet", archive.ref)
    if here.returncode == 0:
        if (sha := here.stdout.strip()) != archive.commit:
            raise FleetError(f"{archive.ref} exists in {repo.common_dir} with another commit ({sha[:12]}); "
                             "fleet restore will not overwrite it", hint=f"look at both: git log {archive.ref}")
        return
    got = run_git(repo.common_dir, "fetch", "-q", "--no-tags", str(remote.cache), archive.ref, timeout=600)
    if got.returncode != 0:
        raise FleetError(f"cannot fetch {archive.ref} from {remote.url}: {last_line(got.stderr)}")
    made = run_git(repo.common_dir, "update-ref", archive.ref, archive.commit, "")  # "": must not exist yet
    if made.returncode != 0:
        raise FleetError(f"cannot create {archive.ref} here: {last_line(made.stderr)}")
