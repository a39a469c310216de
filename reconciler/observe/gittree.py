"""Facts about one working tree, read with plain `git` processes, and the git-running helpers
both engines share: every git process here is bounded in time (`run_bounded`) and runs with
GIT_OPTIONAL_LOCKS=0, so a read never rewrites an index.

`tree_facts` is the one gatherer of what lives in a tree (status, hidden edits, nested
repos, in-progress operations, processes inside): `GitRepo.at_stake` calls it for a linked
worktree of the local repo, the Ray session actor for its clone on a node. What the
branch alone holds (commits, stashes) each engine reads where its refs are; `observe/
stake.py` judges the facts. No GitPython here: the actor imports this module on nodes.
Every call is read-only.
"""
from __future__ import annotations

import heapq
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import EXIT_BLOCKED, FleetError
from .stake import IN_PROGRESS, TreeFacts

if TYPE_CHECKING:
    from .processes import ProcessTable

# git variables that would point a command at another repository than the one it runs in
GIT_LOCATION = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX")
# git configuration given in the environment, which outranks every config file: `git -c` passes it on
# to each git it starts (a hook, an alias, a wrapper), so it describes whatever git process started
# fleet, not the user's standing config. Per-run values there could change what fleet's own git
# reads (core.worktree, core.excludesFile making new work "ignored", hooks): fleet's git never
# inherits them. GIT_CONFIG_KEY_<n> and GIT_CONFIG_VALUE_<n> go with GIT_CONFIG_COUNT.
GIT_CONFIG_FROM_ENV = ("GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT")
_GIT_CONFIG_PAIRS = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")
# Reading must not write: `git status` otherwise refreshes and rewrites the index of the tree it looks at
READ_ONLY = {"GIT_OPTIONAL_LOCKS": "0"}
# fleet's git never asks anyone anything: it may run unattended (the loop, cron, CI), and a prompt
# for a password would hang it. Credential helpers and GIT_ASKPASS still give git what it asks for.
NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0"}
TIMEOUT_ENV = "FLEET_GIT_TIMEOUT"
DEFAULT_TIMEOUT = 120.0  # seconds for one read-only git call (status of a large tree on a cold disk fits)
NETWORK_TIMEOUT_ENV = "FLEET_GIT_NETWORK_TIMEOUT"
DEFAULT_NETWORK_TIMEOUT = 600.0  # seconds for one push or fetch (a large first push over a slow link fits)
# a git call that writes the local repo and can run the user's programs: `git worktree add` (a
# post-checkout hook, a smudge filter fetching LFS objects), the merge queue's merges and commits
# (hooks, a signing program waiting for a passphrase nobody will type)
WRITE_TIMEOUT_ENV = "FLEET_GIT_WRITE_TIMEOUT"
DEFAULT_WRITE_TIMEOUT = 600.0


class GitTimeout(FleetError):
    """A git process that did not finish in time (killed with everything it started)."""


def read_timeout() -> float:
    """Seconds one read-only git call may take: $FLEET_GIT_TIMEOUT, else DEFAULT_TIMEOUT."""
    return _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT)


def network_timeout() -> float:
    """Seconds one git call that talks to a remote (push, fetch) may take:
    $FLEET_GIT_NETWORK_TIMEOUT, else DEFAULT_NETWORK_TIMEOUT."""
    return _seconds(NETWORK_TIMEOUT_ENV, DEFAULT_NETWORK_TIMEOUT)


def write_timeout() -> float:
    """Seconds one git call that writes the local repo and may run the user's hooks, filters or
    signing program may take: $FLEET_GIT_WRITE_TIMEOUT, else DEFAULT_WRITE_TIMEOUT. Past it git
    and everything it started are killed; what it left half done is finished or undone by the
    next pass (an interrupted `git worktree add` is repaired, the scratch tree is reset)."""
    return _seconds(WRITE_TIMEOUT_ENV, DEFAULT_WRITE_TIMEOUT)


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise FleetError(f"{name}={text!r} is not a number of seconds", hint=f"e.g. {name}=300")
    return value


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without GIT_DIR & co (so git works on the repo of its cwd), plus `extra`."""
    env = dict(os.environ)
    for key in GIT_LOCATION:
        env.pop(key, None)
    env.update(extra)
    return env


_NOT_INHERITED = frozenset((*GIT_LOCATION, *GIT_CONFIG_FROM_ENV))


def git_env(**extra: str) -> dict[str, str]:
    """The environment of fleet's own git: `clean_env()` without configuration given in the
    environment (GIT_CONFIG_FROM_ENV), never prompting (NO_PROMPT), plus `extra`. The config
    files (the repository's, the user's global and system ones, wherever GIT_CONFIG_GLOBAL and
    GIT_CONFIG_SYSTEM put them) are read as always. Sessions and gates, the user's own
    programs, get `clean_env()`. One pass over os.environ (this runs for every git call
    that is not given a pass's `read_env()`)."""
    env = {key: value for key, value in os.environ.items()
           if key not in _NOT_INHERITED and not key.startswith(_GIT_CONFIG_PAIRS)}
    env.update(NO_PROMPT)
    env.update(extra)
    return env


def read_env() -> Mapping[str, str]:
    """`git_env()` with READ_ONLY, read-only itself: built once by a pass that runs many read-only
    git calls (a prune check of every candidate) and handed to each, instead of each call
    copying os.environ again. `run_git` uses it as it is (it already holds READ_ONLY)."""
    return MappingProxyType({**git_env(), **READ_ONLY})


def run_git(cwd: Path | None, *args: str, env: Mapping[str, str] | None = None, input: str | None = None,
            timeout: float | None = None, setting: str = TIMEOUT_ENV) -> subprocess.CompletedProcess[str]:
    """`git ARGS` in `cwd`; never raises for git's exit status (callers read returncode).

    Output is decoded as git's paths are meant (UTF-8, undecodable bytes kept as surrogates,
    no newline translation). Without `env`, the environment is `git_env()` (inherited, minus
    GIT_DIR & co and config given in the environment); GIT_OPTIONAL_LOCKS=0 always (no index
    refresh written behind a read).
    After `timeout` seconds git and whatever it started (hooks, an fsmonitor) are killed and
    GitTimeout names the command and `setting`, the variable that sets the time; `read_git` is
    this with the read-only timeout.
    """
    if env is None:
        env = {**git_env(), **READ_ONLY}
    elif env.get("GIT_OPTIONAL_LOCKS") != "0":  # `read_env()`'s already says so: no copy
        env = {**env, **READ_ONLY}
    res = run_bounded(["git", *args], cwd=cwd, env=env, timeout=timeout, setting=setting,
                      input=input.encode("utf-8", "surrogateescape") if input is not None else None)
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode("utf-8", "surrogateescape"),
                                       res.stderr.decode("utf-8", "replace"))


def read_git(cwd: Path | None, *args: str, env: Mapping[str, str] | None = None,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
    """A read-only git call (what `fleet diff` and `fleet status` run): bounded by `read_timeout()`."""
    return run_git(cwd, *args, env=env, input=input, timeout=read_timeout())


def write_git(cwd: Path | None, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A git call that writes the local repo and may run the user's hooks, filters or signing
    program: bounded by `write_timeout()`, its GitTimeout naming FLEET_GIT_WRITE_TIMEOUT."""
    return run_git(cwd, *args, env=env, timeout=write_timeout(), setting=WRITE_TIMEOUT_ENV)


def run_bounded(argv: list[str], *, cwd: Path | str | None, env: Mapping[str, str] | None, timeout: float | None,
                input: bytes | None = None, setting: str = TIMEOUT_ENV) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to completion, output captured. With `timeout`, its whole process group is
    killed when the time is up (a hook git started holds the pipes open otherwise) and
    GitTimeout is raised. One watchdog thread (`_WATCHDOG`) serves every call, so a call that
    finishes in time waits for nothing (no polling for the exit) and starts no thread of its
    own (a thread per call cost more than the Python of a prune check: docs/benchmarks.md)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=timeout is not None)
    watch = _WATCHDOG.watch(proc.pid, timeout) if timeout is not None else None
    try:
        out, err = proc.communicate(input)
    except BaseException:  # interrupted (Ctrl-C): git must not outlive us in its own session
        if timeout is not None:
            _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        if watch is not None:
            _WATCHDOG.cancel(watch)
    if watch is not None and watch.fired:
        shown = " ".join(a for a in argv if not a.startswith("--git-dir="))
        raise GitTimeout(f"`{shown}` did not finish within {timeout:g}s (in {cwd or os.getcwd()}); it was stopped",
                         hint=f"git hangs on a slow or unreachable disk or network, or on a hook, filter, "
                              f"fsmonitor or signing program it runs (one waiting for input waits forever: fleet "
                              f"runs unattended); to allow more time, set {setting}=SECONDS")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


class _Watch:
    """One bounded process: its group is killed at `deadline` (time.monotonic) unless cancelled first."""

    __slots__ = ("cancelled", "deadline", "fired", "pid")

    def __init__(self, pid: int, deadline: float) -> None:
        self.pid, self.deadline = pid, deadline
        self.fired = self.cancelled = False

    def __lt__(self, other: _Watch) -> bool:
        return self.deadline < other.deadline


class _Watchdog:
    """The deadlines of every bounded process of this process, kept by one daemon thread.

    `cancel` and the kill take one lock, so after `cancel` returns the group is never
    killed; a kill that came first shows as `fired`. Cancelled entries leave the heap
    when they reach its top, or all at once when they are most of it (a loop's thousands of
    calls a tick must not pile up for a whole timeout)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[_Watch] = []
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def watch(self, pid: int, timeout: float) -> _Watch:
        entry = _Watch(pid, time.monotonic() + timeout)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fleet-git-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:  # earlier than the thread is waiting for: wake it
                self._cond.notify()
        return entry

    def cancel(self, entry: _Watch) -> None:
        with self._cond:
            if entry.fired or entry.cancelled:
                return
            entry.cancelled = True
            self._cancelled += 1
            if self._cancelled > 64 and 2 * self._cancelled > len(self._heap):
                self._heap = [e for e in self._heap if not e.cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0].cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled -= 1
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0].deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                entry = heapq.heappop(self._heap)
                entry.fired = True
                try:
                    _kill_group(entry.pid)
                except OSError:  # whatever a kill meets, this thread must outlive it: every later call waits on it
                    pass

    def _after_fork(self) -> None:
        # a forked child has none of the parent's threads and none of its processes to watch
        self._cond = threading.Condition(threading.Lock())
        self._heap, self._cancelled, self._thread = [], 0, None


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._after_fork)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def last_line(text: str) -> str:
    """The telling part of git's stderr: what the remote said and what it rejected, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line.removeprefix("remote:").strip() for line in lines if line.startswith("remote:")]
    said += [line.lstrip("! ") for line in lines if "rejected]" in line]
    return "; ".join(dict.fromkeys(s for s in said if s)) or (lines[-1] if lines else "")


def rev(cwd: Path, ref: str) -> str | None:
    """The commit `ref` names in the repo of `cwd`, or None."""
    res = read_git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return res.stdout.strip() or None if res.returncode == 0 else None


def checked(res: subprocess.CompletedProcess[str], path: Path, what: str) -> str:
    """Output of a git call a verdict depends on: a failure must refuse, never read as "nothing"."""
    if res.returncode != 0:
        raise FleetError(f"cannot tell what is at stake in {path}: git {what} failed: "
                         f"{last_line(res.stderr) or f'exit {res.returncode}'}", exit_code=EXIT_BLOCKED)
    return res.stdout


def tree_facts(path: Path, git_dir: Path | None, *, plain_index: bool = False,
               ignore_groups: frozenset[int] = frozenset(), table: ProcessTable | None = None,
               ignored: bool = False, env: Mapping[str, str] | None = None) -> TreeFacts:
    """What lives in the working tree at `path` and nowhere else (commits and stashes left empty).

    `git_dir`: the tree's own git dir (a linked worktree's admin dir, a clone's .git), where
    in-progress markers and the index are; None when unknown. `plain_index`: that index is
    in the format `index_has_no_flags` reads (see `plain_index`), so `git ls-files` runs only
    when some file is flagged. `ignore_groups`: process groups fleet stops itself; `table`:
    the cwds of every process, read once for many trees. `ignored`: list the ignored files too
    (path, size), from the same `git status` (`--ignored` with `--untracked-files=all` names
    each file, as `git ls-files --others --ignored --exclude-standard` does): one git process
    a tree, not two. `env`: the pass's `read_env()` (None: `git_env()` for each call).
    """
    from .processes import processes_in  # psutil, only when a tree is looked at

    status: list[str] = []
    hidden: list[str] = []
    nested: list[str] = []
    processes: list[str] = []
    ignored_files: list[tuple[str, int]] = []
    # string paths: this runs for each of a thousand candidates, and pathlib's joins were a
    # good part of its Python
    where = os.fspath(path)
    admin = os.fspath(git_dir) if git_dir is not None else None
    if os.path.isdir(where):
        processes = processes_in(path, ignore_groups=ignore_groups, table=table)
        # a tree whose .git file is gone (deleted, or a removal interrupted) must not be read as
        # the enclosing repository's: name its git dir
        if admin is not None and not os.path.exists(os.path.join(where, ".git")):
            env = {**(env if env is not None else git_env()), "GIT_DIR": admin, "GIT_WORK_TREE": where}
        out = checked(read_git(path, "status", "--porcelain=v1", "-z", "--untracked-files=all",
                               *(["--ignored"] if ignored else []), env=env), path, "status")
        status, ignored_paths = status_and_ignored(out)
        ignored_files = [(p, _size(where, p)) for p in ignored_paths]
        if not (plain_index and admin is not None and index_has_no_flags(os.path.join(admin, "index"))):
            hidden = hidden_edits(path, env=env)
        nested = [p for p in status + hidden if os.path.exists(os.path.join(where, p, ".git"))]
    markers = _in_progress(admin) if admin is not None else []
    return TreeFacts(status=tuple(status), hidden_edits=tuple(hidden), nested_repos=tuple(nested),
                     markers=tuple(markers), processes=tuple(processes), ignored=tuple(ignored_files))


def _in_progress(admin: str) -> list[str]:
    """The IN_PROGRESS markers in the git dir `admin`, from one listing of it (a prune check of a
    thousand trees made six `stat`s each, every one giving the interpreter up to the other
    checks' threads). A name listed counts even where `exists` would say no (a dangling
    symlink): it blocks the prune, the safe side. A git dir that cannot be listed but can be
    searched (mode 0311) is asked name by name, as git itself would find them there."""
    try:
        names = set(os.listdir(admin))
    except OSError:
        return [m for m in IN_PROGRESS if os.path.lexists(os.path.join(admin, m))]
    return [m for m in IN_PROGRESS if m in names]


def _size(tree: Path | str, rel: str) -> int:
    try:
        return os.lstat(os.path.join(tree, rel)).st_size
    except OSError:
        return 0


def leftover_facts(path: Path, git_dir: Path | None, safe: list[str], *,
                   ignore_groups: frozenset[int] = frozenset(), table: ProcessTable | None = None) -> TreeFacts:
    """Facts of a working tree an interrupted prune left half deleted (commits and stashes left empty).

    `status` lists each file still in the tree, and each entry of its index (as "PATH
    (staged)"), whose content is in none of the trees of the `safe` commits (the tree's
    HEAD, the prune's archive): new or changed since the prune checked it. Deleted files
    are not listed: what they held is in those trees. git runs with the admin dir `git_dir`
    named explicitly, because the tree's own `.git` file may be among what was deleted
    (git would then find the enclosing repository instead). Ignored files are not looked
    at, as the prune that began did not. Read-only but for objects written into the
    object store (as `git add` does).
    """
    from .processes import processes_in  # psutil, only when a tree is looked at

    markers = tuple(_in_progress(os.fspath(git_dir))) if git_dir is not None else ()  # as `tree_facts` reads them
    if not path.is_dir():
        return TreeFacts(markers=markers)
    if git_dir is None:  # not a tree of this repository any more: nothing can be judged safe
        raise FleetError(f"cannot tell what is at stake in {path}: its admin dir is gone", exit_code=EXIT_BLOCKED)
    env = git_env(GIT_DIR=str(git_dir), GIT_WORK_TREE=str(path), GIT_OPTIONAL_LOCKS="0")
    known: set[str] = set()
    for commit in safe:
        listing = checked(run_git(path, "ls-tree", "-r", "-z", "--full-tree", commit, env=env), path, "ls-tree")
        known.update(entry.partition("\t")[0].split(" ")[2] for entry in listing.split("\0") if entry)
    with tempfile.TemporaryDirectory(prefix="fleet-leftover-") as tmp:
        scratch = {**env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        checked(run_git(path, "add", "-A", "--", ".", env=scratch), path, "add")
        files = _index_entries(checked(run_git(path, "ls-files", "-s", "-z", env=scratch), path, "ls-files"))
    staged: list[tuple[str, str]] = []
    if (git_dir / "index").is_file():
        staged = _index_entries(checked(run_git(path, "ls-files", "-s", "-z", env=env), path, "ls-files"))
    status = [p for oid, p in files if oid not in known]
    status += [f"{p} (staged)" for oid, p in staged if oid not in known and p not in status]
    return TreeFacts(status=tuple(status), markers=markers,
                     processes=tuple(processes_in(path, ignore_groups=ignore_groups, table=table)))


def _index_entries(listing: str) -> list[tuple[str, str]]:
    """(object id, path) of each entry of `git ls-files -s -z`."""
    out = []
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        if path:
            out.append((meta.split(" ")[1], path))
    return out


def plain_index(common_dir: Path) -> bool:
    """Indexes of this repo are in the format `index_has_no_flags` reads: SHA-1 object ids
    (no extensions.objectFormat) and no GIT_INDEX_FILE override."""
    try:
        config = (common_dir / "config").read_text(errors="replace").lower()
    except OSError:
        return False
    return "objectformat" not in config and "GIT_INDEX_FILE" not in os.environ


def status_paths(status: str) -> list[str]:
    """Paths from `git status --porcelain=v1 -z` (renames carry a second, old path)."""
    return status_and_ignored(status)[0]


def status_and_ignored(status: str) -> tuple[list[str], list[str]]:
    """(paths, ignored paths) from `git status --porcelain=v1 -z [--ignored]`: an ignored
    entry ("!!") is not a change; a rename or copy carries a second, old path."""
    paths: list[str] = []
    ignored: list[str] = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code == "!!":
            ignored.append(path)
            continue
        paths.append(path)
        if code[0] in "RC":
            next(entries, None)
    return paths, ignored


def hidden_edits(root: Path, *, env: Mapping[str, str] | None = None) -> list[str]:
    """Edits git status does not show: files marked assume-unchanged or skip-worktree
    whose content differs from the index (`git worktree remove` would delete them)."""
    listing = checked(read_git(root, "ls-files", "-v", "-s", "-z", env=env), root, "ls-files")
    staged: dict[str, str] = {}  # flagged file -> its object id in the index (the first stage listed)
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        tag = meta[:1]
        if path and (tag.islower() or tag == "S") and path not in staged and (root / path).is_file():
            staged[path] = meta.split(" ")[2]
    if not staged:
        return []
    paths = list(staged)
    if any("\n" in p for p in paths):  # --stdin-paths reads lines: hash such names one by one
        hashes = [checked(read_git(root, "hash-object", "--", p, env=env), root, "hash-object").strip() for p in paths]
    else:  # filters (eol, clean) apply per path, as for `git add`
        hashes = checked(read_git(root, "hash-object", "--stdin-paths", input="\n".join(paths) + "\n", env=env),
                          root, "hash-object").split()
    return [p for p, h in zip(paths, hashes, strict=True) if h != staged[p]]


def index_has_no_flags(index: Path | str) -> bool:
    """True only if the index provably marks no file assume-unchanged or skip-worktree, so
    `hidden_edits` has nothing to find and its `git ls-files` can be skipped.

    Reads the index file (Documentation/gitformat-index.txt): versions 2 and 3, SHA-1,
    no split or sparse index. Anything else, an entry with the assume-valid or extended
    bit, or a file that does not parse exactly: False, and the caller asks git.
    """
    try:
        with open(index, "rb") as f:
            data = f.read()
    except OSError:
        return False
    if len(data) < 32 or data[:4] != b"DIRC":
        return False
    version, count = int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big")
    if version not in (2, 3):
        return False
    pos, end = 12, len(data) - 20  # the trailing SHA-1 checksum
    # (this loop runs for every entry of every candidate's index: its arithmetic is kept to the
    # high flags byte, which holds both refusing bits and the length's top bits)
    for _ in range(count):
        if pos + 62 > end:
            return False
        high = data[pos + 60]  # the flags, after 40 bytes of stat data and the object id
        if high & 0xC0:  # assume-valid, or extended flags (skip-worktree, intent-to-add)
            return False
        length = ((high & 0x0F) << 8) | data[pos + 61]
        nul = pos + 62 + length
        if length == 0x0FFF or nul >= end or data[nul]:  # a very long path, or not where it should end
            return False
        pos += (70 + length) & ~7  # the entry (62 bytes and the path), NUL-padded to a multiple of 8 bytes
    while pos < end:  # extensions: 4-byte signature, 4-byte size; lowercase ones (split/sparse index) refuse
        if pos + 8 > end or not 65 <= data[pos] <= 90:
            return False
        pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
    return pos == end
