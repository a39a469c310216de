"""Failpoints: named steps where fleet can be made to die as a crash would (docs/sessions.md, "Crash consistency").

`failpoint(name)` does nothing unless the environment variable FLEET_FAILPOINT lists
`name` (several: comma-separated); then it sends SIGKILL to fleet's whole process group,
so fleet and every git process it is running die at once, with no cleanup, exactly as
`kill -9 -PGID` would. Run fleet in a process group of its own when arming one (the
sweep in tests/test_crash.py starts it with `start_new_session=True`): the signal goes to
the group fleet is in, whatever else is in it. Agent sessions are never hit: each is
its own session and process group (act/session_host.py).

Two failpoints are inside a git operation, where a crash leaves git's own half-done
state on disk (see `inside_add_env` and `remove_tree_halfway` for how each is made
faithful). Every name is in NAMES, in the order of the steps; `failpoint` refuses any
other name even when nothing is armed, so a misspelt failpoint fails every test run.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

ENV = "FLEET_FAILPOINT"

NAMES = (
    # act/worktrees.py create_worktree (the executor recorded CREATING_WORKTREE first)
    "create-worktree:before-add",
    "create-worktree:inside-add",  # git is checking out the files: admin dir locked "initializing"
    "create-worktree:after-add",
    "create-worktree:after-marker",
    # act/branch_marks.py migrate_marks: the marks file written, the old config keys not unset yet
    "marks:after-file",
    # engines/executor.py _spawn (STARTING_SESSION recorded first)
    "spawn:before-launch",
    "spawn:after-launch",  # the session runs; the record does not know it yet
    # act/sessions.py stop, engines/executor.py _stop
    "stop:after-signal",  # SIGTERM sent to the session's group, not yet known to have ended
    "stop:after-stop",  # the session ended; the record still says Running
    # act/archive.py archive_work
    "archive:after-commit",  # the archive commit exists, no ref names it yet
    "archive:after-ref",
    # act/worktrees.py remove_worktree (the executor recorded PRUNING and what was checked first)
    "prune:before-remove",
    "prune:inside-remove",  # the tree half deleted, its admin dir still there
    "prune:after-remove",
    "prune:after-branch-delete",
    # the merge queue (engines/queue.py, act/delivery.py): the target moves only at update-ref
    "deliver:after-integrate",  # the scratch tree holds the merged result; no gate ran yet
    "deliver:after-gates",  # the delivery gates passed; the intent (pending) is not recorded yet
    "deliver:before-update-ref",  # the intent is recorded; the target has not moved
    "deliver:after-update-ref",  # the target moved; the agent's record does not say Delivered yet
    "deliver:after-record",
    "deliver:after-push",  # the target is pushed; the pull request is not updated yet
)

# the attribute that routes every checked-out file through the failpoint's smudge filter
_FILTER = "fleet-failpoint"


def armed(name: str) -> bool:
    """Is the failpoint `name` set in FLEET_FAILPOINT? (An unknown name is a programming error.)"""
    if name not in NAMES:
        raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(NAMES)}")
    value = os.environ.get(ENV, "")
    return name in {part.strip() for part in value.split(",")}


def failpoint(name: str) -> None:
    """Die here, with fleet's whole process group, if FLEET_FAILPOINT names this step."""
    if armed(name):
        crash()


def crash() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def inside_add_env(name: str = "create-worktree:inside-add") -> dict[str, str]:
    """Variables for `git worktree add` that make it die half-way when `name` is armed; {} otherwise.

    Why this is faithful: `git worktree add` (2.39) creates the admin dir, writes its
    `locked` file ("initializing"), the tree's `.git` file, HEAD, and only then checks
    the files out in a child `git reset --hard`; it removes the lock and its "junk"
    only after that, or from a signal handler SIGKILL never reaches. A smudge filter runs
    inside that checkout for the first file written, from git's own process tree: killing
    fleet's process group and git's (a session of its own: the add is bounded) there
    leaves exactly what a `kill -9` of fleet during the checkout leaves, admin dir locked "initializing", no ownership
    marker, index not written, files not checked out. The filter and the attribute are
    given as environment config (GIT_CONFIG_COUNT, read by git and its children); nothing
    is written into the repository. A file whose attributes in the repo name another filter
    is checked out as always; with no file to check out at all, the caller's
    `failpoint(name)` right after git returns is the nearest point left.
    """
    if not armed(name):
        return {}
    attributes = Path(tempfile.gettempdir()) / f"fleet-failpoint-{os.getuid()}.attributes"
    if not attributes.exists():  # written whole or not at all: another fleet may be reading it
        tmp = attributes.with_name(f"{attributes.name}.{os.getpid()}.tmp")
        tmp.write_text(f"* filter={_FILTER}\n")
        os.replace(tmp, attributes)
    # fleet's group, then git's own: a bounded git runs in a session of its own (gittree.run_bounded)
    kill = (f"{shlex.quote(sys.executable)} -c 'import os, signal; os.killpg({os.getpgrp()}, signal.SIGKILL); "
            f"os.killpg(os.getpgrp(), signal.SIGKILL)'")
    return git_config_env({"core.attributesFile": str(attributes), f"filter.{_FILTER}.smudge": kill,
                           f"filter.{_FILTER}.required": "true"})


def git_config_env(values: dict[str, str]) -> dict[str, str]:
    """`git -c KEY=VALUE` for a whole command tree, as GIT_CONFIG_* variables. They are counted
    from 0: fleet's git never inherits config given in the environment (observe/gittree.py git_env)."""
    env = {"GIT_CONFIG_COUNT": str(len(values))}
    for i, (key, value) in enumerate(values.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def remove_tree_halfway(path: Path, name: str = "prune:inside-remove") -> None:
    """When `name` is armed: delete half of the tree at `path` the way `git worktree remove`
    does, then crash. Nothing happens otherwise.

    Why this is faithful: after its checks, `git worktree remove` (2.39,
    builtin/worktree.c) does nothing but `remove_dir_recursively` on the working tree,
    entry by entry in readdir order, depth first, then deletes the admin dir. It runs no
    hook and no child during the deletion, so no failpoint can fire inside git; a
    SIGKILL there lands between two unlinks and leaves some prefix of that walk deleted
    and the admin dir (with the ownership marker and the index) intact. This deletes
    such a prefix, the same walk, then kills the group as `failpoint` does.
    """
    if not armed(name):
        return
    entries = _walk(path)
    for entry in entries[: max(1, len(entries) // 2)]:  # a directory comes after its contents
        if entry.is_dir() and not entry.is_symlink():
            entry.rmdir()
        else:
            entry.unlink()
    crash()


def _walk(path: Path) -> list[Path]:
    """What remove_dir_recursively unlinks, in its order: each entry of a directory in
    readdir order, a directory's contents before the directory itself."""
    out: list[Path] = []
    with os.scandir(path) as it:
        for entry in it:
            child = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                out += _walk(child)
            out.append(child)
    return out
