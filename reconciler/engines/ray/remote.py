"""The fleet's git remote, as the driver sees and changes it.

Under ray the agents' branches live on spec.remote, not in the local repo. The driver
keeps a fetch cache of it, `.fleet/ray/<fleet>/remote.git` (bare, borrowing the local
repo's objects), fetched on every observation, to answer what `git ls-remote` cannot:
which commits of a branch are not reachable from base. Changes to the remote are pushes
from the cache, each with a lease (the ref must still be what was observed).

Ownership: a branch is this fleet's only if the remote also has
refs/fleet/owners/<fleet>/<branch>, pushed atomically with the branch when fleet
created it (the local engine keeps the same fact in the repo's config).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from filelock import FileLock

from ...act.archive import ARCHIVE_PREFIX
from ...errors import FleetError
from ...observe.gittree import clean_env as _env
from ...observe.gittree import last_line as _last_line
from ...observe.gittree import read_timeout, run_git
from ...spec.loader import LoadedFleet

OWNERS = "refs/fleet/owners"
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
                            "+refs/tags/*:refs/tags/*", f"+{OWNERS}/{self.fleet}/*:{OWNERS}/{self.fleet}/*")
        if res.returncode != 0 and strict:
            raise FleetError(f"cannot fetch spec.remote {self.url}: {_last_line(res.stderr)}",
                             hint="every node and this machine must reach spec.remote (docs/scale-out.md)")
        self.read_cache()

    def read_cache(self) -> None:
        """Heads and owner refs as the fetch cache last saw them; nothing is fetched (and with no
        cache yet, there are none)."""
        if not (self.cache / "HEAD").is_file():
            return
        self.heads = self._refs("refs/heads/")
        prefix = f"{OWNERS}/{self.fleet}/"
        self.owned = {ref.removeprefix(prefix) for ref in self._refs(prefix, full=True)}

    def resolve(self, rev: str) -> str | None:
        res = self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        return res.stdout.strip() or None if res.returncode == 0 else None

    def unreachable(self, sha: str, base: str) -> list[str]:
        """Commits of `sha` not reachable from `base` ("sha subject"), as a local prune lists them."""
        exclude = [f"^{b}" for b in [self.resolve(base)] if b]
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
        self._push("--atomic", f"--force-with-lease=refs/heads/{branch}:{expected}", *refs,
                   what=f"delete branch {branch}")
        self.heads.pop(branch, None)
        self.owned.discard(branch)

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
        # a remote that does not answer for 10 minutes is an error naming the command (GitTimeout)
        return run_git(None, f"--git-dir={self.cache}", *args, env=_env(), timeout=600)


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
