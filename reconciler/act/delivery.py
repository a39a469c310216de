"""The merge queue's git work (docs/delivery.md): a scratch worktree the fleet owns, an agent
branch integrated onto the target's tip there, and the target moved by compare-and-swap.

The scratch tree is `<worktrees root>/.delivery-<fleet>`, detached, marked as this fleet's
scratch (observe/gitrepo.py `SCRATCH_MARKER`): observation never takes it for an agent's tree,
so it is never pruned, and nothing an agent does happens in it. Every integration starts
from a clean checkout of the target's tip, so a crash mid-merge leaves nothing the next
one trips on. The target branch is only ever written by `git update-ref refs/heads/<into>
NEW OLD`: git refuses if the target is not at OLD any more, and NEW is always a descendant
of OLD whose delivery gates passed (the caller runs them in between).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FleetError
from ..observe.gitrepo import SCRATCH_MARKER, GitRepo
from ..observe.gittree import NETWORK_TIMEOUT_ENV, GitTimeout, git_env, network_timeout, run_git, write_git
from ..store.records import now_iso, write_text_atomic
from .failpoints import failpoint

SCRATCH_PREFIX = ".delivery-"  # agent names start with a letter or digit: never an agent's tree
_IDENTITY = {"GIT_AUTHOR_NAME": "fleet", "GIT_AUTHOR_EMAIL": "fleet@localhost",
             "GIT_COMMITTER_NAME": "fleet", "GIT_COMMITTER_EMAIL": "fleet@localhost"}


@dataclass
class Integrated:
    """One branch integrated onto a commit in the scratch tree."""

    commit: str | None  # the result (None: it did not integrate)
    conflicts: list[str] = field(default_factory=list)  # files with textual conflicts
    error: str | None = None  # git failed otherwise
    empty: bool = False  # the result's tree is the target's: nothing to deliver


def scratch_path(root: Path, fleet: str) -> Path:
    return root / f"{SCRATCH_PREFIX}{fleet}"


def ensure_scratch(repo: GitRepo, root: Path, fleet: str, at: str) -> Path:
    """The fleet's scratch tree, created (detached at `at`) or repaired when needed."""
    path = scratch_path(root, fleet)
    registered = _registered(repo, path)
    if registered is not None and (not path.is_dir() or not (registered / SCRATCH_MARKER).exists()):
        # a crash inside or right after `git worktree add`, or the directory deleted by hand:
        # the tree is scratch (nothing of anyone's lives there), so it is made again
        run_git(repo.root, "worktree", "remove", "--force", "--force", str(path), env=git_env())
        run_git(repo.root, "worktree", "prune", env=git_env())
        registered = None
    if registered is None:
        if path.exists():
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            else:
                raise FleetError(f"{path} exists and is not fleet's delivery scratch tree",
                                 hint="move it away: fleet integrates branches there")
        path.parent.mkdir(parents=True, exist_ok=True)
        done = write_git(repo.root, "worktree", "add", "--detach", str(path), at, env=git_env())
        if done.returncode != 0:
            raise FleetError(f"cannot create the delivery scratch tree {path}: {done.stderr.strip()}")
        admin = _registered(repo, path)
        assert admin is not None
        write_text_atomic(admin / SCRATCH_MARKER, json.dumps({"fleet": fleet, "created": now_iso()}) + "\n")
    return path


def remove_scratch(repo: GitRepo, root: Path, fleet: str) -> bool:
    """Remove the fleet's scratch tree (`fleet delete` of the whole fleet): it holds nothing of
    anyone's, only the last integration. Only a tree whose marker names this fleet is removed."""
    path = scratch_path(root, fleet)
    admin = _registered(repo, path)
    if admin is None:
        return False
    try:
        owner = json.loads((admin / SCRATCH_MARKER).read_text()).get("fleet")
    except (OSError, ValueError, AttributeError):
        return False
    if owner != fleet:
        return False
    return run_git(repo.root, "worktree", "remove", "--force", "--force", str(path), env=git_env()).returncode == 0


def _registered(repo: GitRepo, path: Path) -> Path | None:
    """The admin dir of the linked worktree at `path`, if git has one."""
    admin = repo.admin_dirs().get(os.path.realpath(path))
    return Path(admin) if admin is not None else None


def _git(tree: Path, *args: str) -> tuple[int, str, str]:
    # bounded: a merge or commit runs the user's hooks and signing program (gittree.write_timeout)
    proc = write_git(tree, *args, env=_env(tree))
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def _env(tree: Path) -> dict[str, str]:
    """git's environment in the scratch tree; fleet's own identity only where none is configured."""
    env = git_env(LC_ALL="C")
    if run_git(tree, "config", "user.email", env=env).returncode != 0:
        env.update(_IDENTITY)
    return env


def reset_to(tree: Path, commit: str) -> None:
    """A clean checkout of `commit` (whatever a crashed integration left there)."""
    gitdir = Path(_git(tree, "rev-parse", "--absolute-git-dir")[1])
    # a git killed in the scratch tree (past its time, or with fleet) leaves its index lock; only
    # fleet works in this tree, under the fleet lock, so the lock is nobody's now
    (gitdir / "index.lock").unlink(missing_ok=True)
    if (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists():
        _git(tree, "rebase", "--abort")
    if (gitdir / "CHERRY_PICK_HEAD").exists() or (gitdir / "sequencer").exists():
        _git(tree, "cherry-pick", "--abort")
    if (gitdir / "MERGE_HEAD").exists():
        _git(tree, "merge", "--abort")
    for args in (("reset", "-q", "--hard"), ("checkout", "-q", "--detach", "--force", commit),
                 ("clean", "-q", "-ffdx")):
        code, _, err = _git(tree, *args)
        if code != 0:
            raise FleetError(f"cannot reset the delivery scratch tree {tree} to {commit[:12]}: {err}")


def integrate(tree: Path, *, onto: str, sha: str, strategy: str, message: str) -> Integrated:
    """Integrate commit `sha` onto the current HEAD (which is `onto`) with `strategy`. A conflict
    is aborted, leaving HEAD at `onto`; the agent's branch is never touched (only its commit is read)."""
    if strategy == "merge":
        code, out, err = _git(tree, "merge", "--no-ff", "--no-edit", "-m", message, sha)
    elif strategy == "squash":
        code, out, err = _git(tree, "merge", "--squash", sha)
        if code == 0:
            if _git(tree, "diff", "--cached", "--quiet")[0] == 0:
                return Integrated(onto, empty=True)
            code, out, err = _git(tree, "commit", "-q", "-m", message)
    else:
        code, out, err = _rebase_checked(tree, onto=onto, sha=sha, message=message)
    if code != 0:
        conflicts = _git(tree, "diff", "--name-only", "--diff-filter=U")[1].splitlines()
        reset_to(tree, onto)
        if conflicts:
            return Integrated(None, conflicts=sorted(set(conflicts)))
        return Integrated(None, error=(err or out)[-2000:])
    head = _git(tree, "rev-parse", "HEAD")[1]
    same = _git(tree, "rev-parse", f"{head}^{{tree}}")[1] == _git(tree, "rev-parse", f"{onto}^{{tree}}")[1]
    return Integrated(head, empty=same)


def _rebase_checked(tree: Path, *, onto: str, sha: str, message: str) -> tuple[int, str, str]:
    """`_rebase`, then its result checked against what merging `sha` into `onto` gives
    (`git merge-tree --write-tree`): a replay can lose content (a plain `git rebase` drops
    merge commits, so a change made inside the agent's merge of a side branch of its own is
    gone) while the tip is then recorded as delivered. A result that differs is thrown away
    for the squashed change of the whole range (`git merge --squash`, one commit, still
    linear), which must then be exactly the merge's tree; else nothing is delivered (an error)."""
    code, out, err = _rebase(tree, onto=onto, sha=sha, message=message)
    if code != 0:
        return code, out, err
    mcode, mout, merr = _git(tree, "merge-tree", "--write-tree", onto, sha)
    want = mout.splitlines()[0] if mcode == 0 and mout else None  # None: git sees a conflict
    if want is not None and _git(tree, "rev-parse", "HEAD^{tree}")[1] == want:
        return 0, "", ""
    reset_to(tree, onto)
    code, out, err = _git(tree, "merge", "--squash", sha)
    if code != 0:
        return code, out, err
    first, _, rest = message.partition("\n")
    code, out, err = _commit_staged(tree, sha, f"{first} (squashed: replaying its commits one by one would "
                                               f"have lost a change made in a merge commit)\n{rest}")
    if code != 0:
        return code, out, err
    got = _git(tree, "rev-parse", "HEAD^{tree}")[1]
    if want is None or got != want:
        return 1, "", (f"strategy rebase: the integration of {sha[:12]} onto {onto[:12]} is not what merging "
                       f"them gives ({merr or 'a different tree'}); nothing delivered")
    return 0, "", ""


def _commit_staged(tree: Path, like: str, body: str) -> tuple[int, str, str]:
    """Commit what is staged (nothing staged: no commit) with `like`'s author and date: a squash
    stays attributed to the agent's work it holds."""
    if _git(tree, "diff", "--cached", "--quiet")[0] == 0:
        return 0, "", ""
    author = _git(tree, "log", "-1", "--format=%an <%ae>%n%aI", like)[1].splitlines()
    return _git(tree, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify",
                f"--author={author[0]}", f"--date={author[1]}", "-m", body)


def _rebase(tree: Path, *, onto: str, sha: str, message: str) -> tuple[int, str, str]:
    """`strategy: rebase`: the branch's own commits replayed onto `onto` (HEAD), linear.

    A plain `git rebase` drops merge commits, so an agent that resolved a conflict by merging
    the target into its branch (`git merge <into>`, as the Conflicted message allows) would
    have its resolution thrown away and its old commits replayed into the same conflict, up to
    maxAttempts. `--rebase-merges` does not help: it replays the pre-merge commits onto the
    target first, which is that conflict again. So when the branch holds a merge of a commit
    the target already contains (the agent's latest one, along its first parents), everything
    up to that merge is taken *as the agent resolved it*: the merge's change against its
    target-side parent (`cherry-pick -m K`), one commit; the commits after it are replayed
    as usual. That diff contains exactly the agent's work (the target's side is in `onto`
    already), so the history stays linear, and a target that moved on since is a new
    conflict, reported like any other. An agent that rebased instead has no such merge:
    its commits are replayed as ever.
    """
    resolved = _last_target_merge(tree, onto, sha)
    if resolved is None:  # on a detached HEAD at `sha`: the agent's branch is never touched
        _git(tree, "checkout", "-q", "--detach", sha)
        return _git(tree, "rebase", "--quiet", onto)
    merge, parent = resolved
    code, out, err = _git(tree, "cherry-pick", "--no-commit", "-m", str(parent), merge)
    if code != 0:
        return code, out, err
    subjects = _git(tree, "log", "--no-merges", "--format=- %s", merge, f"^{merge}^{parent}")[1]
    first, _, rest = message.partition("\n")
    code, out, err = _commit_staged(tree, merge, f"{first} (up to its merge {merge[:12]} of the target, "
                                                 f"squashed as it resolved it)\n\n{subjects}\n{rest}")
    if code != 0:
        return code, out, err
    if merge == sha:
        return 0, "", ""
    # the commits after the merge, replayed onto the squashed resolution (HEAD)
    return _git(tree, "rebase", "--quiet", "--onto", _git(tree, "rev-parse", "HEAD")[1], merge, sha)


def _last_target_merge(tree: Path, onto: str, sha: str) -> tuple[str, int] | None:
    """The newest merge on `sha`'s first-parent line (not in `onto`) one of whose parents `onto`
    contains: (that merge, the parent's 1-based number, for `cherry-pick -m`)."""
    code, out, _ = _git(tree, "rev-list", "--first-parent", "--merges", "--parents", sha, f"^{onto}")
    if code != 0:
        return None
    for line in out.splitlines():
        merge, *parents = line.split()
        inside = [(k, p) for k, p in enumerate(parents, start=1)
                  if _git(tree, "merge-base", "--is-ancestor", p, onto)[0] == 0]
        # two parents in the target (a merge of base and of the target, say): the newer one,
        # so the change taken is only the agent's
        for k, p in inside:
            if all(_git(tree, "merge-base", "--is-ancestor", q, p)[0] == 0 for _, q in inside):
                return merge, k
        if inside:
            return merge, inside[-1][0]
    return None


def move_target(repo: GitRepo, into: str, new: str, old: str | None, *, why: str) -> str | None:
    """`git update-ref refs/heads/<into> NEW OLD`; None when done, else why git refused (the
    target moved since OLD was read: nothing changed, the next pass integrates onto the new tip)."""
    failpoint("deliver:before-update-ref")
    proc = run_git(repo.root, "update-ref", "-m", why, f"refs/heads/{into}", new, old or "", env=git_env())
    if proc.returncode != 0:
        return proc.stderr.strip() or f"update-ref exited {proc.returncode}"
    failpoint("deliver:after-update-ref")
    return None


def keep_delivered(repo: GitRepo, ref: str, sha: str, old: str | None, *, agent: str) -> str | None:
    """`refs/fleet/delivered/<fleet>/<agent>` -> the agent tip a squash or rebase delivered: its
    commits are not in the target as themselves, so this ref is what makes them safe to prune.
    None when the ref holds `sha` (or a descendant, which anchors it too: never moved back).

    Moved as the target is, by compare-and-swap (`update-ref REF NEW OLD`, OLD as the caller
    read it before the delivery began, None: no ref then): a ref someone else moved meanwhile
    is not overwritten, and what happened is returned; the caller leaves the delivery to be
    recorded by the next pass, which reads the ref again."""
    if old is not None and contains(repo, old, sha):
        return None
    proc = run_git(repo.root, "update-ref", "-m", f"fleet: delivered {agent}", ref, sha, old or "", env=git_env())
    if proc.returncode == 0:
        return None
    now = tip(repo, ref)
    if now == old:
        raise FleetError(f"cannot write {ref}: {proc.stderr.strip()}")
    return (f"{ref} moved while {agent} was being delivered (fleet read {old[:12] if old else 'no ref'}, it is "
            f"{now[:12] if now else 'gone'}); not overwritten: the next pass reads it again and records the delivery")


@dataclass(frozen=True)
class Pushed:
    """What one push did. `rejected`: the remote refused the update (it has commits the branch
    lacks), which only a person can sort out; a push that failed otherwise (credentials, the
    network, no answer within the time limit) is not rejected, and the next pass tries again."""

    ok: bool
    words: str  # git's output (its end), or what stopped it
    rejected: bool = False
    hint: str = ""  # what to do, for a push that failed without being rejected


def push(repo: GitRepo, remote: str, into: str, src: str | None = None) -> Pushed:
    """Push branch `into` (never forced), from `src` (default refs/heads/<into>; an agent's branch
    under ray is read from the engine's copy of it). A rejected push changes nothing.

    git runs without a terminal (a network call is bounded: a session of its own) and with
    GIT_TERMINAL_PROMPT=0 (git_env), so a remote that wants credentials fleet cannot give fails
    at once instead of waiting for someone to type them; one that does not answer is stopped
    after FLEET_GIT_NETWORK_TIMEOUT."""
    if shutil.which("git") is None:  # pragma: no cover - git is what fleet runs on
        return Pushed(False, "git not found")
    ref = f"{src or f'refs/heads/{into}'}:refs/heads/{into}"
    try:
        proc = run_git(repo.root, "push", "--porcelain", remote, ref, env=git_env(LC_ALL="C"),
                       timeout=network_timeout())
    except GitTimeout:
        return Pushed(False, f"`git push {remote} {ref}` did not finish within {network_timeout():g}s; it was stopped",
                      hint=f"{remote} did not answer in time; check that `git push {remote}` works from this "
                           f"machine, or allow more time with {NETWORK_TIMEOUT_ENV}=SECONDS")
    text = (proc.stdout + proc.stderr).strip()[-2000:]
    if proc.returncode == 0:
        return Pushed(True, text)
    # --porcelain prints "!<TAB>src:dst<TAB>[rejected] ..." (or "[remote rejected]") for each ref refused
    rejected = any(line.startswith("!\t") for line in proc.stdout.splitlines())
    return Pushed(False, text, rejected=rejected,
                  hint="" if rejected else f"fleet's git never prompts for credentials (it may run unattended): "
                                           f"give git them without a prompt (a credential helper, ssh-agent), "
                                           f"check that `git push {remote}` works from this machine, then apply again")


def head(tree: Path) -> str:
    return _git(tree, "rev-parse", "HEAD")[1]


def tip(repo: GitRepo, ref: str) -> str | None:
    proc = run_git(repo.root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", env=git_env())
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def contains(repo: GitRepo, tip_: str, commit: str) -> bool:
    return run_git(repo.root, "merge-base", "--is-ancestor", commit, tip_, env=git_env()).returncode == 0
