"""The git side of the reachability rule (observe/stake.py `anchors`): read the refs, reflogs,
submodules and ignored files of a tree, and list the commits no anchor reaches.

Plain git processes through `gittree.read_git` (bounded, GIT_OPTIONAL_LOCKS=0), no GitPython:
the Ray session actor imports this module on nodes for its clone, the local engine for a
linked worktree, so both judge by one rule. Every call is read-only.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.branch_marks import parse_config_marks, read_marks
from ..store.observed import common_dir_of
from .gittree import checked, read_git
from .stake import RefFacts, anchors, owned_base, stake_tips

if TYPE_CHECKING:
    from ..spec.loader import LoadedFleet
    from .gitrepo import GitRepo

ZERO = "0" * 40
SUBMODULE_DEPTH = 3  # submodules of submodules are followed this deep


def ref_facts(cwd: Path, base: str | None, *, env: dict[str, str] | None = None) -> RefFacts:
    """Every ref, the remotes with their URLs (one naming this repository itself reads as "."),
    the branches some fleet owns, and what `base` resolves to. Four git calls."""
    refs = checked(read_git(cwd, "for-each-ref", "--format=%(refname)", env=env), cwd, "for-each-ref").split()
    remotes: list[tuple[str, str]] = []
    res = read_git(cwd, "config", "--get-regexp", r"^remote\..*\.url$", env=env)
    here = _self_paths(cwd, env)
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        key, _, url = line.partition(" ")
        name = key[len("remote."):-len(".url")]
        remotes.append((name, "." if _is_self(url, cwd, here) else url))
    res = read_git(cwd, "config", "--get-regexp", r"^branch\..*\.fleetowner$", env=env)
    common = _common_dir(cwd, env)
    owned = set(read_marks(common, res.stdout if res.returncode == 0 else "").claimed) if common is not None \
        else set(parse_config_marks(res.stdout if res.returncode == 0 else "")[0])
    base_ref = base_commit = None
    if base:
        got = read_git(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}", env=env)
        base_commit = got.stdout.strip() or None if got.returncode == 0 else None
        # (rev-parse echoes --end-of-options here: a name that looks like an option is no ref)
        full = read_git(cwd, "rev-parse", "--symbolic-full-name", base, env=env) if not base.startswith("-") \
            else None
        names = full.stdout.split() if full is not None and full.returncode == 0 else []
        base_ref = names[0] if len(names) == 1 and names[0].startswith("refs/") else None
    return RefFacts(refs=tuple(refs), remotes=tuple(remotes), owned=frozenset(owned), base_ref=base_ref,
                    base_commit=base_commit)


def _common_dir(cwd: Path, env: dict[str, str] | None) -> Path | None:
    res = read_git(cwd, "rev-parse", "--path-format=absolute", "--git-common-dir", env=env)
    return Path(res.stdout.strip()).resolve() if res.returncode == 0 else None


def _self_paths(cwd: Path, env: dict[str, str] | None) -> set[str]:
    common = _common_dir(cwd, env)
    return set() if common is None else {str(common), str(common.parent)}


def _is_self(url: str, cwd: Path, here: set[str]) -> bool:
    """A remote whose URL is this repository (`.`, or a path to it): pushing there is no backup."""
    url = url.strip()
    if url in ("", "."):
        return True
    if "://" in url and not url.startswith("file://"):
        return False
    if ":" in url.split("/", 1)[0] and not url.startswith("file://"):
        return False  # scp-like host:path
    path = Path(url.removeprefix("file://"))
    try:
        real = (path if path.is_absolute() else cwd / path).resolve()
    except OSError:
        return False
    return str(real) in here or str(real.parent) in here and real.name == ".git"


def reflog_commits(*logs: Path | str) -> list[str]:
    """Every commit the reflog files `logs` name (old and new side of each entry), each once."""
    out: dict[str, None] = {}
    for log in logs:
        try:
            with open(log, errors="replace") as f:  # as Path.read_text read it, without pathlib's cost
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split(" ", 2)
            for sha in parts[:2]:
                if len(sha) >= 40 and sha != ZERO and sha.strip("0"):
                    out[sha] = None
    return list(out)


def unsafe_commits(cwd: Path, tips: Iterable[str], safe: Iterable[str], *,
                   env: Mapping[str, str] | None = None) -> list[str]:
    """"sha subject" of each commit reachable from `tips` and from none of `safe` (one git call;
    a tip whose object is gone, as after a gc of a reflog entry, is skipped)."""
    tips = list(tips)
    if not tips:
        return []
    lines = [*tips, *(f"^{s}" for s in safe)]
    res = read_git(cwd, "log", "--format=%h %s", "--ignore-missing", "--stdin", "--", env=env,
                   input="\n".join(lines) + "\n")
    return [line for line in checked(res, cwd, "log").splitlines() if line]


@dataclass(frozen=True)
class Submodule:
    path: str  # relative to the superproject's tree
    work_tree: Path  # its checkout
    git_dir: Path  # its own git dir (absorbed under the superproject's, or `<checkout>/.git`)


def submodules(tree: Path, git_dir: Path | None, *, env: dict[str, str] | None = None) -> list[Submodule]:
    """The checked-out submodules (gitlinks of the index with a repository at their path).
    Cheap when there are none: git is asked only if `.gitmodules` or `<git dir>/modules` exists."""
    if not (os.path.exists(os.path.join(tree, ".gitmodules"))
            or (git_dir is not None and os.path.isdir(os.path.join(git_dir, "modules")))):
        return []
    listing = checked(read_git(tree, "ls-files", "-s", "-z", env=env), tree, "ls-files")
    out = []
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        if not path or not meta.startswith("160000 "):
            continue
        work = tree / path
        if not (work / ".git").exists():
            continue  # not checked out: its commits are wherever its gitlink came from
        res = read_git(work, "rev-parse", "--path-format=absolute", "--git-dir")
        if res.returncode == 0 and res.stdout.strip():
            out.append(Submodule(path=path, work_tree=work, git_dir=Path(res.stdout.strip())))
    return out


def local_tips(git_dir: Path, cwd: Path) -> list[str]:
    """HEAD, every branch and every reflog entry of a repository (a submodule, a clone):
    what deleting its git dir would drop."""
    heads = read_git(cwd, "for-each-ref", "--format=%(objectname)", "refs/heads/")
    head = read_git(cwd, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    logs = [git_dir / "logs" / "HEAD"]
    heads_logs = git_dir / "logs" / "refs" / "heads"
    if heads_logs.is_dir():
        logs += [Path(root) / f for root, _, files in os.walk(heads_logs) for f in files]
    tips = [*(head.stdout.split() if head.returncode == 0 else []),
            *(checked(heads, cwd, "for-each-ref").split()), *reflog_commits(*logs)]
    return list(dict.fromkeys(tips))


def submodule_commits(tree: Path, git_dir: Path | None, *, depth: int = SUBMODULE_DEPTH) -> list[str]:
    """"sha subject (submodule PATH)" of every commit a checked-out submodule holds that none of
    its remote-tracking refs (of a remote with a URL) or archive refs reaches: deleting the
    tree deletes its git dir with them. Followed `depth` levels down."""
    out: list[str] = []
    for sub in submodules(tree, git_dir):
        safe = anchors(ref_facts(sub.work_tree, None), base=None, branch=None)
        out += [f"{line} (submodule {sub.path})" for line in unsafe_commits(sub.work_tree,
                                                                           local_tips(sub.git_dir, sub.work_tree),
                                                                           safe)]
        if depth > 1:
            out += [line.replace(" (submodule ", f" (submodule {sub.path}/", 1)
                    for line in submodule_commits(sub.work_tree, sub.git_dir, depth=depth - 1)]
    return out


def branch_reflog(common_dir: Path, branch: str | None) -> list[str]:
    return reflog_commits(os.path.join(common_dir, "logs", "refs", "heads", branch)) if branch else []


def tree_reflog(admin_dir: Path | None) -> list[str]:
    """The worktree's own HEAD reflog (a linked worktree keeps it in its admin dir)."""
    return reflog_commits(os.path.join(admin_dir, "logs", "HEAD")) if admin_dir is not None else []


__all__ = ["Submodule", "branch_reflog", "check_base", "local_tips", "ref_facts", "reflog_commits",
           "stake_tips", "submodule_commits", "submodules", "tree_reflog", "unsafe_commits"]


def check_base(loaded: LoadedFleet, repo: GitRepo | None = None) -> None:
    """`spec.base` must not resolve to a branch a fleet owns: an agent's branch as base makes
    every commit of that agent count as merged (the rule's first anchor), and pruning it
    would lose them. A validation error at the file's `base:` line (validate, diff, apply)."""
    from ..errors import Problem, SpecInvalid
    from ..spec.positions import locate

    base = loaded.fleet.spec.base
    if not (loaded.repo / ".git").exists() or base.startswith("-"):
        return
    # one git call when no branch is owned (validate and diff stay fast on any file); `repo`:
    # the pass's handle, which reads the config's marks once for the pass
    if repo is not None:
        common: Path | None = repo.common_dir
        config = repo.config_marks()
    else:
        res = read_git(loaded.repo, "config", "--get-regexp", r"^branch\..*\.fleet(owner|protect)$")
        common = common_dir_of(loaded.repo)
        config = res.stdout if res.returncode == 0 else ""
    resolving: Future[subprocess.CompletedProcess[str]] | None = None
    if repo is not None and repo.memo is not None:
        # the loop, whose fleet owns branches nearly always: the base's full name is asked of git
        # while the marks' keys are read here (git runs on another core meanwhile)
        pool = ThreadPoolExecutor(max_workers=1)
        resolving = pool.submit(read_git, loaded.repo, "rev-parse", "--symbolic-full-name", base)
        pool.shutdown(wait=False)
    # first without the identity check of every mark (a reflog read each, every tick): a base
    # that no mark names at all is no owned branch; only one that some mark names is verified
    # (the loop's handle remembers the verified marks between ticks: those, read no more often)
    claimed = (repo.marks().claimed if repo is not None and repo.memo is not None
               else read_marks(common, config, verify=False).claimed if common is not None
               else frozenset(parse_config_marks(config)[0]))
    if not claimed:
        return
    full = resolving.result() if resolving is not None else \
        read_git(loaded.repo, "rev-parse", "--symbolic-full-name", base)
    names = full.stdout.split() if full.returncode == 0 else []
    base_ref = names[0] if len(names) == 1 else None
    if owned_base(RefFacts(owned=claimed, base_ref=base_ref), base) is None:
        return
    owners = read_marks(common, config).claimed if common is not None else claimed
    owned = owned_base(RefFacts(owned=owners, base_ref=base_ref), base)
    if owned is None:
        return
    line, col = locate(loaded.raw, ("spec", "base"))
    shown = str(loaded.path)
    raise SpecInvalid([Problem(f"spec.base {base!r} is branch {owned}, which a fleet owns (an agent's branch): "
                               "every commit of that agent would count as merged, and could be pruned",
                               shown, line, col,
                               hint="set base to the branch agents start from and merge into (e.g. main); "
                                    "an agent's branch is never a base")])
