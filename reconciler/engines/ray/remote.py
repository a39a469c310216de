"""The fleet's git remote, as the driver sees and changes it.

Under ray the agents' branches live on spec.remote, not in the local repo. The driver
keeps a fetch cache of it, `.fleet/ray/<fleet>/remote.git` (bare, borrowing the local
repo's objects), fetched on every observation, to answer what `git ls-remote` cannot:
which commits of a branch are not reachable from base. Changes to the remote are pushes
from the cache, each with a lease (the ref must still be what was observed).

Ownership: a branch is this fleet's only if the remote also has
refs/fleet/owners/<fleet>/<branch>, pushed atomically with the branch when fleet
created it (the local engine keeps the same fact in the repo's config).

Fencing: a session never pushes the agent's branch. Every attempt (each start, restart
or resume of a session) has a generation N and pushes only its own ref,
refs/fleet/attempts/<fleet>/<branch>/<N>; the controller (the holder of the lease,
lease.py) moves the branch, fast-forward and with a lease, to the tip of the newest
attempt on every pass that acts. Starting attempt N+1 first merges attempt N's tip one
last time, then creates ref N+1: from then on nothing attempt N pushes (a session on a
node the cluster declared dead but that still runs, say) can reach the branch. What it
pushes after that stays under its own ref, an **orphan**, reported (condition
OrphanWork) and never merged silently; an attempt ref whose commits are all on the
branch is deleted.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from filelock import FileLock

from ...act.archive import ARCHIVE_PREFIX, Archive
from ...errors import FleetError
from ...observe.gittree import git_env as _env
from ...observe.gittree import last_line as _last_line
from ...observe.gittree import network_timeout, read_timeout, run_git
from ...spec.loader import LoadedFleet

OWNERS = "refs/fleet/owners"
ATTEMPTS = "refs/fleet/attempts"
ARCHIVES = ARCHIVE_PREFIX  # archive refs are named by act/archive.py, as for a local fleet
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/\s]+@[^/\s:]+:")


class Remote:
    def __init__(self, url: str, cache: Path, fleet: str, *, borrow: Path | None = None) -> None:
        self.url = url
        self.cache = cache
        self.fleet = fleet
        self._borrow = borrow  # a local objects dir the cache may read from (alternates)
        self.heads: dict[str, str] = {}  # branch -> sha, as of the last refresh
        self.owned: set[str] = set()  # branches with this fleet's owner ref
        self.attempts: dict[str, dict[int, str]] = {}  # branch -> {generation: tip} (see Fencing)
        self.merging = False  # a controller's view: refresh() moves branches to their newest attempt
        self.merge_problems: dict[str, str] = {}  # branch -> why it could not be moved, as of the last refresh

    @classmethod
    def of(cls, loaded: LoadedFleet, *, fleet_home: Path, objects: Path | None, resolve: bool = True) -> Remote:
        """`resolve=False` (diff without --connect): spec.remote as written, nothing looked up."""
        url = resolve_url(loaded) if resolve else str(loaded.fleet.spec.remote)
        return cls(url, fleet_home / "ray" / loaded.name / "remote.git", loaded.name, borrow=objects)

    def refresh(self, *, strict: bool = True) -> None:
        """Fetch branches, tags and this fleet's owner refs into the cache.

        `strict=False` (status, diff) falls back to what the cache last saw when the remote
        cannot be reached right now; apply and delete must see the remote as it is.
        """
        self._ensure_cache()
        # `fleet status` may fetch while the loop does: git would refuse the second ref update
        with FileLock(str(self.cache) + ".lock", timeout=120):
            res = self._git("fetch", "-q", "--prune", "--no-tags", self.url, "+refs/heads/*:refs/heads/*",
                            "+refs/tags/*:refs/tags/*", f"+{OWNERS}/{self.fleet}/*:{OWNERS}/{self.fleet}/*",
                            f"+{ATTEMPTS}/{self.fleet}/*:{ATTEMPTS}/{self.fleet}/*")
        if res.returncode != 0 and strict:
            raise FleetError(f"cannot fetch spec.remote {self.url}: {_last_line(res.stderr)}",
                             hint="every node and this machine must reach spec.remote (docs/scale-out.md)")
        self.read_cache()
        if self.merging and res.returncode == 0:
            self.merge_attempts()

    def read_cache(self) -> None:
        """Heads and owner refs as the fetch cache last saw them; nothing is fetched (and with no
        cache yet, there are none)."""
        if not (self.cache / "HEAD").is_file():
            return
        self.heads = self._refs("refs/heads/")
        prefix = f"{OWNERS}/{self.fleet}/"
        self.owned = {ref.removeprefix(prefix) for ref in self._refs(prefix, full=True)}
        self.attempts = {}
        for ref, sha in self._refs(f"{ATTEMPTS}/{self.fleet}/").items():
            branch, _, gen = ref.rpartition("/")
            if branch and gen.isdigit():
                self.attempts.setdefault(branch, {})[int(gen)] = sha

    # -- fencing -------------------------------------------------------------------------------

    def attempt_ref(self, branch: str, generation: int) -> str:
        return f"{ATTEMPTS}/{self.fleet}/{branch}/{generation}"

    def merge_attempts(self) -> None:
        """Move every owned branch to its newest attempt's tip (fast-forward, leased); drop attempt
        refs the branch holds entirely. A branch that cannot be moved is left as it is, with why."""
        self.merge_problems = {}
        moved = False
        for branch in sorted(self.attempts):
            if branch in self.owned and branch in self.heads:
                moved = self._merge(branch) or moved
        if moved:
            self.read_cache()

    def _merge(self, branch: str) -> bool:
        gens = self.attempts[branch]
        newest = max(gens)
        head, tip = self.heads[branch], gens[newest]
        leases, updates = [], []
        if tip != head:
            if not self._is_ancestor(head, tip):
                self.merge_problems[branch] = (f"attempt {newest} ({tip[:12]}) does not continue the branch "
                                               f"({head[:12]}): its history was rewritten; the branch stays")
                return False
            leases.append(f"--force-with-lease=refs/heads/{branch}:{head}")
            updates.append(f"{tip}:refs/heads/{branch}")
            head = tip
        # attempts the branch holds entirely are merged: their refs go (never the newest, its session pushes there)
        for gen, sha in sorted(gens.items()):
            if gen != newest and self._is_ancestor(sha, head):
                ref = self.attempt_ref(branch, gen)
                leases.append(f"--force-with-lease={ref}:{sha}")
                updates.append(f":{ref}")
        if not updates:
            return False
        res = self._git("push", "-q", "--atomic", *leases, self.url, *updates)
        if res.returncode != 0:
            self.merge_problems[branch] = f"cannot move it to attempt {newest}: {_last_line(res.stderr)}"
            return False
        self._git("fetch", "-q", self.url, f"+refs/heads/{branch}:refs/heads/{branch}")
        for gen in [g for g in gens if g != newest and self._is_ancestor(gens[g], head)]:
            self._git("update-ref", "-d", self.attempt_ref(branch, gen))
        return True

    def new_attempt(self, branch: str) -> int:
        """Fence the branch's current attempt and start the next: merge the current one's tip a last
        time, then create the next attempt's ref at the branch's tip. Returns its generation."""
        with FileLock(str(self.cache) + ".lock", timeout=120):
            res = self._git("fetch", "-q", "--prune", self.url, f"+refs/heads/{branch}:refs/heads/{branch}",
                            f"+{ATTEMPTS}/{self.fleet}/{branch}/*:{ATTEMPTS}/{self.fleet}/{branch}/*")
        if res.returncode != 0:
            raise FleetError(f"cannot fetch spec.remote {self.url}: {_last_line(res.stderr)}")
        self.read_cache()
        if branch not in self.heads:
            raise FleetError(f"branch {branch} does not exist on the remote {self.url}")
        if branch in self.attempts:
            self._merge(branch)
            self.read_cache()
        generation = max(self.attempts.get(branch, {0: ""})) + 1
        ref = self.attempt_ref(branch, generation)
        self._push(f"--force-with-lease={ref}:", f"{self.heads[branch]}:{ref}",
                   what=f"start attempt {generation} of {branch}")
        self.attempts.setdefault(branch, {})[generation] = self.heads[branch]
        return generation

    def orphans(self, branch: str) -> list[tuple[str, list[str]]]:
        """Attempt refs of `branch` other than the newest whose commits are not all on the branch:
        (ref, its commits not on the branch, "sha subject")."""
        gens = self.attempts.get(branch, {})
        if len(gens) < 2 or branch not in self.heads:
            return []
        newest = max(gens)
        out = []
        for gen, sha in sorted(gens.items()):
            if gen == newest:
                continue
            res = self._git("log", "--format=%h %s", sha, f"^{self.heads[branch]}", "--")
            commits = [line for line in res.stdout.splitlines() if line]
            if commits:
                out.append((self.attempt_ref(branch, gen), commits))
        return out

    def _is_ancestor(self, old: str, new: str) -> bool:
        return self._git("merge-base", "--is-ancestor", old, new).returncode == 0

    def resolve(self, rev: str) -> str | None:
        res = self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        return res.stdout.strip() or None if res.returncode == 0 else None

    def unreachable(self, sha: str, base: str, also: tuple[str, ...] = ()) -> list[str]:
        """Commits of `sha` not reachable from `base` (nor from the branches `also`: the delivery
        target) ("sha subject"), as a local prune lists them."""
        exclude = [f"^{b}" for b in [self.resolve(r) for r in (base, *also)] if b]
        res = self._git("log", "--format=%h %s", sha, *exclude, "--")
        return [line for line in res.stdout.splitlines() if line]

    def ahead(self, sha: str, base: str) -> int | None:
        base_sha = self.resolve(base)
        if base_sha is None:
            return None
        res = self._git("rev-list", "--count", f"{base_sha}..{sha}")
        return int(res.stdout) if res.returncode == 0 else None

    def create_branch(self, branch: str, base: str) -> str:
        """Push `base` as the agent's branch, with this fleet's owner ref, in one atomic push."""
        sha = self.resolve(base)
        if sha is None:
            raise FleetError(f"base {base!r} does not exist on the remote {self.url}")
        self._push("--atomic", f"--force-with-lease=refs/heads/{branch}:", f"{sha}:refs/heads/{branch}",
                   f"{sha}:{OWNERS}/{self.fleet}/{branch}", what=f"create branch {branch}")
        self.heads[branch] = sha
        self.owned.add(branch)
        return sha

    def delete_branch(self, branch: str, expected: str) -> None:
        """Delete the branch and its owner ref, only if the branch is still at `expected`."""
        refs = [f":refs/heads/{branch}"]
        if branch in self.owned:
            refs.append(f":{OWNERS}/{self.fleet}/{branch}")
        leases = [f"--force-with-lease=refs/heads/{branch}:{expected}"]
        for gen, sha in sorted(self.attempts.get(branch, {}).items()):  # attempts it holds go with it
            if self._is_ancestor(sha, expected):
                leases.append(f"--force-with-lease={self.attempt_ref(branch, gen)}:{sha}")
                refs.append(f":{self.attempt_ref(branch, gen)}")
        self._push("--atomic", *leases, *refs, what=f"delete branch {branch}")
        self.attempts.pop(branch, None)
        self.heads.pop(branch, None)
        self.owned.discard(branch)

    def copy_branches(self, into: Path, branches: list[str], prefix: str, *, keep: bool = True) -> None:
        """The remote's `branches` as the cache has them (merged from their attempts), into the
        repository whose git dir is `into`, as `<prefix><branch>`; a copy of a branch the remote no
        longer has is deleted (`keep=False`: every copy, after the fetch). Nothing under refs/heads is touched."""
        specs = [f"+refs/heads/{b}:{prefix}{b}" for b in branches if b in self.heads]
        if specs:
            res = run_git(into, "fetch", "-q", "--no-tags", str(self.cache), *specs, env=_env(), timeout=600)
            if res.returncode != 0:
                raise FleetError(f"cannot copy the agents' branches from the fetch cache {self.cache}: "
                                 f"{_last_line(res.stderr)}")
        listed = run_git(into, "for-each-ref", "--format=%(objectname) %(refname)", prefix, env=_env(), timeout=60)
        for line in listed.stdout.splitlines():
            sha, _, ref = line.partition(" ")
            if not keep or ref.removeprefix(prefix) not in self.heads:
                run_git(into, "update-ref", "-d", ref, sha, env=_env(), timeout=60)

    def archive(self, sha: str, ref: str) -> None:
        self._push(f"{sha}:{ref}", what=f"archive {sha[:12]} to {ref}")

    def contains(self, ref: str, sha: str) -> bool:
        """Does the remote's `ref` (fetched now) contain commit `sha`?"""
        with FileLock(str(self.cache) + ".lock", timeout=120):
            fetched = self._git("fetch", "-q", self.url, f"+{ref}:{ref}")
        if fetched.returncode != 0:
            return False
        return self._git("merge-base", "--is-ancestor", sha, ref).returncode == 0

    def _push(self, *args: str, what: str) -> None:
        res = self._git("push", "-q", self.url, *args)
        if res.returncode != 0:
            raise FleetError(f"cannot {what} on {self.url}: {_last_line(res.stderr)}")

    def _refs(self, prefix: str, *, full: bool = False) -> dict[str, str]:
        res = self._git("for-each-ref", "--format=%(objectname) %(refname)", prefix)
        out: dict[str, str] = {}
        for line in res.stdout.splitlines():
            sha, _, ref = line.partition(" ")
            out[ref if full else ref.removeprefix(prefix)] = sha
        return out

    def _ensure_cache(self) -> None:
        if (self.cache / "HEAD").is_file():
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(self.cache)], env=_env(), capture_output=True, check=False)
        if self._borrow is not None and self._borrow.is_dir():  # fetch only what the local repo lacks
            alternates = self.cache / "objects" / "info" / "alternates"
            alternates.parent.mkdir(parents=True, exist_ok=True)
            alternates.write_text(f"{self._borrow}\n")

    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        # a remote that does not answer within FLEET_GIT_NETWORK_TIMEOUT (default 10 minutes) is an
        # error naming the command (GitTimeout)
        return run_git(None, f"--git-dir={self.cache}", *args, env=_env(), timeout=network_timeout())


def resolve_url(loaded: LoadedFleet) -> str:
    """spec.remote as a URL every node can use: a URL as written, a path made absolute (from the
    fleet file's directory), or the URL of a remote of spec.repo with that name."""
    value = loaded.fleet.spec.remote
    if not value:
        raise FleetError("placement.engine ray needs spec.remote", hint="docs/scale-out.md")
    if _URL.match(value):
        return value
    path = (loaded.path.resolve().parent / os.path.expanduser(value)).resolve()
    if path.exists():
        return str(path)
    if "/" not in value:
        res = run_git(loaded.repo, "remote", "get-url", value, env=_env(), timeout=read_timeout())
        if res.returncode == 0 and res.stdout.strip():
            url = res.stdout.strip()
            return url if _URL.match(url) else str((loaded.repo / url).resolve())
    raise FleetError(f"spec.remote {value!r} is not a URL, an existing path or a remote of {loaded.repo}",
                     hint="e.g. remote: origin, remote: git@host:org/repo.git, remote: /srv/git/repo.git")


def remote_archives(loaded: LoadedFleet) -> list[Archive]:
    """What fleet kept of a ray fleet's work on spec.remote: the archives (refs/fleet/archive/<fleet>/...,
    made when a clone was released or pruned) and the refs of fenced attempts whose work is not on
    their branch (see Fencing), fetched now into the cache."""
    return kept_on_remote(loaded)[1]


def kept_on_remote(loaded: LoadedFleet) -> tuple[Remote, list[Archive]]:
    """`remote_archives`, with the remote whose fetch cache now holds every one of them."""
    from ...observe.gitrepo import GitRepo
    from ...observe.snapshot import fleet_home

    repo = GitRepo(loaded.repo)
    remote = Remote.of(loaded, fleet_home=fleet_home(repo), objects=repo.common_dir / "objects")
    remote.refresh()
    prefix = f"{ARCHIVES}/{loaded.name}"
    with FileLock(str(remote.cache) + ".lock", timeout=120):
        res = remote._git("fetch", "-q", "--prune", remote.url, f"+{prefix}/*:{prefix}/*")
    if res.returncode != 0:
        raise FleetError(f"cannot fetch the archives from spec.remote {remote.url}: {_last_line(res.stderr)}")
    listed = remote._git("for-each-ref", "--sort=refname",
                         "--format=%(refname) %(objectname) %(creatordate:iso-strict) %(subject)", f"{prefix}/")
    found = []
    for line in listed.stdout.splitlines():
        ref, commit, date, subject = (line.split(" ", 3) + [""])[:4]
        found.append(Archive(ref=ref, commit=commit, date=date, subject=subject))
    for branch in sorted(remote.attempts):
        for ref, commits in remote.orphans(branch):
            sha = remote.resolve(ref) or ""
            date = remote._git("log", "-1", "--format=%cI", sha).stdout.strip() if sha else ""
            found.append(Archive(ref=ref, commit=sha, date=date,
                                 subject=f"work of a fenced attempt not on {branch} ({len(commits)} commit(s))"))
    return remote, found
