"""The safety invariant as a property (docs/safety.md, "The invariant").

Hypothesis builds random fleets whose worktrees are in random states (dirty,
untracked, ignored files, a protected ignored `.env`, stash entries, unmerged / merged /
pushed commits, an upstream that is the branch itself (`git push -u . HEAD`), a commit
only the reflog holds (`git reset --hard`), a tree switched to a user's branch, a
submodule with a local commit, an in-progress merge, `git worktree lock`, a foreign
process working in the tree, a live fleet session), plus a hand-made worktree under the
fleet's root and a user branch with the fleet's prefix. Then it removes some or all
agents with the real CLI (`fleet apply` after undeclaring them, maybe with a spec
change at once: the agent renamed, `worktrees.root` or `base` changed; or `fleet
delete`, with or without `--archive`) and checks:

- every commit that existed is still reachable from a ref (refs/fleet/archive/*
  and refs/stash included), and no ref other than a pruned agent's branch moved;
- every worktree is either still in place with identical files (ignored ones
  included), or a commit still reachable holds exactly its non-ignored files: the
  archive ref when something was at stake, else the worktree's own HEAD;
- a commit only the reflog held, and a submodule's local commit, are reachable from the
  archive when their tree was pruned;
- worktrees with nothing at stake were pruned, their branch deleted, a retention
  archive kept; only the agent's own branch is ever deleted (a user branch the tree
  has checked out stays);
- a locked worktree, one with a foreign process in it or with a merge in progress
  is never pruned, even with --archive;
- exit code 3 exactly when something was refused, else 0;
- the foreign worktree, the user's branch and agents that were not targeted are untouched.

Each example makes its own repository, so examples do not leak into each other.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import agents
import psutil
from conftest import fleet, git, session_pids, status, wait_until
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

FLEET = "t"
PREFIX = f"fleet/{FLEET}/"
WT_ROOT = Path(".fleet") / "worktrees"
ARCHIVES = f"refs/fleet/archive/{FLEET}/"
NAMES = ("w-a", "w-b", "w-c")


# ---------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class AgentCase:
    name: str
    session: bool = False  # a live fleet session (sleeps) instead of an agent that committed and exited
    # what happened to its commits: "unmerged", "merged" (into main), "pushed" (-u origin), "selfpushed" (-u .)
    history: str = "unmerged"
    ahead: bool = False  # one more commit after that: unmerged, unpushed
    stash: bool = False
    in_progress: bool = False  # a conflicted `git merge` left in progress
    dirty: bool = False  # a modified tracked file
    untracked: bool = False
    ignored: bool = False  # ignored files only: must NOT block
    locked: bool = False
    process: bool = False  # a foreign process (not fleet's session) with its cwd in the tree
    reflog: bool = False  # a commit, then `git reset --hard HEAD~1`: only the reflogs hold it
    switched: bool = False  # the tree switched to a user's branch (from main, one commit on it)
    submodule: bool = False  # a local commit in the tree's submodule `lib` (the bump merged into main)
    secret: bool = False  # an ignored `.env`: gc.protectIgnored blocks, --archive too

    @property
    def branch(self) -> str:
        return PREFIX + self.name

    def unsaved_commits(self, base_changed: bool = False) -> bool:
        """Commits no anchor reaches: the commit agent's own (a session makes none), those merged
        into main once main is no longer the base, those "pushed" to the repository itself."""
        # merged work with the base changed is still held by a user's branch the tree switched to,
        # which starts from main after the merge (and stays: an anchor of the rule)
        branch = {"unmerged": not self.session, "merged": base_changed and not self.switched, "pushed": False,
                  "selfpushed": True}
        return branch[self.history] or self.ahead or self.in_progress or self.reflog or self.submodule

    @property
    def unarchivable(self) -> bool:
        """What --archive cannot save: a lock, a live process, an operation in progress, a secret."""
        return self.locked or self.process or self.in_progress or self.secret

    def at_stake(self, base_changed: bool = False) -> bool:
        return (self.unsaved_commits(base_changed) or self.stash or self.dirty or self.untracked
                or self.in_progress or self.unarchivable)


@dataclass(frozen=True)
class Case:
    agents: tuple[AgentCase, ...]
    act: str  # "apply" (undeclare the targets) or "delete"
    targets: tuple[str, ...] | None  # None: `fleet delete` with no names (every agent)
    archive: bool = False
    foreign_worktree: bool = False
    user_branch: bool = False
    change: str = "none"  # with act "apply": "rename" the targets, or change "root" or "base" at once

    @property
    def base_changed(self) -> bool:
        return self.change == "base"

    def stake(self, a: AgentCase) -> bool:
        return a.at_stake(self.base_changed)

    @property
    def targeted(self) -> set[str]:
        return {a.name for a in self.agents} if self.targets is None else set(self.targets)

    def removed(self, a: AgentCase) -> bool:
        """What the rules say happens to `a`: pruned (True) or left in place (False)."""
        if a.name not in self.targeted:
            return False
        return not self.stake(a) or (self.archive and not a.unarchivable)

    @property
    def refused(self) -> bool:
        return any(a.name in self.targeted and not self.removed(a) for a in self.agents)


RISKS = ("ahead", "stash", "in_progress", "dirty", "untracked", "locked", "process", "reflog", "submodule",
         "secret")


@st.composite
def agent_cases(draw: st.DrawFn, name: str) -> AgentCase:
    """A third each: nothing at stake, exactly one risk, any mix of risks."""
    session = draw(st.booleans())
    history = draw(st.sampled_from(["unmerged", "merged", "pushed", "selfpushed"]))
    ignored = draw(st.booleans())
    switched = draw(st.booleans())  # no risk by itself: the user's branch stays, holding its commit
    profile = draw(st.sampled_from(["safe", "one", "many"]))
    if profile != "many" and history in ("unmerged", "selfpushed"):  # else its commits are at stake
        history = draw(st.sampled_from(["merged", "pushed"]))
    if profile == "safe":
        return AgentCase(name, session=session, history=history, ignored=ignored, switched=switched)
    if profile == "one":
        risks = {draw(st.sampled_from(RISKS)): True}
    else:
        risks = draw(st.fixed_dictionaries({k: st.booleans() for k in RISKS}))
        for rare in ("in_progress", "submodule"):  # rarer: one blocks everything, one is slow to set up
            risks[rare] = risks[rare] and draw(st.booleans())
    if risks.get("in_progress"):
        switched = False  # the merge runs on the agent's own branch
    if risks.get("submodule"):
        history = "merged"  # its bump is merged: only the submodule's commit is at stake
    return AgentCase(name, session=session, history=history, ignored=ignored, switched=switched, **risks)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, len(NAMES)))
    agent_list = tuple(draw(agent_cases(name)) for name in NAMES[:n])
    names = [a.name for a in agent_list]
    act = draw(st.sampled_from(["apply", "delete"]))
    subset = st.lists(st.sampled_from(names), min_size=1, unique=True).map(lambda xs: tuple(sorted(xs)))
    if act == "apply":
        targets: tuple[str, ...] | None = draw(st.one_of(st.just(tuple(names)), subset))
    else:
        targets = draw(st.one_of(st.none(), subset))
    change = draw(st.sampled_from(["none", "none", "rename", "root", "base"])) if act == "apply" else "none"
    return Case(agent_list, act, targets, archive=draw(st.booleans()),
                foreign_worktree=draw(st.booleans()), user_branch=draw(st.booleans()), change=change)


# ---------------------------------------------------------------------------- building a world

@dataclass
class World:
    repo: Path
    script: Path
    sleepers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)  # agent -> a commit no ref reaches (reflog, submodule)


def spec_text(world: World, declared: list[AgentCase], *, change: str = "none") -> str:
    lines = ["apiVersion: fleet/v1alpha1", "kind: Fleet", f"metadata: {{name: {FLEET}}}", "spec:",
             "  tiers: {local: {runtime: command}}"]
    if change == "root":
        lines.append("  worktrees: {root: .fleet/trees-moved}")
    if change == "base":
        lines.append("  base: develop")
    if not declared:
        return "\n".join(lines + ["  agents: []"]) + "\n"
    lines.append("  agents:")
    for a in declared:
        args = ("sleep", "300") if a.session else ("commit",)
        lines.append(f"    - {{name: {a.name}, tier: local, command: {agents.argv(world.script, *args)}}}")
    return "\n".join(lines) + "\n"


def commit_file(wt: Path, name: str, text: str) -> None:
    (wt / name).write_text(text)
    git(wt, "add", name)
    git(wt, "commit", "-q", "-m", f"add {name}")


def merge_bump(repo: Path, branch: str) -> None:
    """Merge `branch`'s bump of `lib` into main. A second agent's bump conflicts with the first
    one's (two gitlinks, commits of two submodule clones git cannot merge): its own is taken."""
    res = subprocess.run(["git", "merge", "-q", "--no-edit", branch], cwd=repo, capture_output=True, text=True)
    if res.returncode == 0:
        return
    conflicted = git(repo, "diff", "--name-only", "--diff-filter=U").split()
    assert conflicted == ["lib"], res.stdout + res.stderr  # any other conflict is the builder's bug
    git(repo, "update-index", "--cacheinfo", f"160000,{git(repo, 'rev-parse', f'{branch}:lib').strip()},lib")
    git(repo, "commit", "-q", "--no-edit")


def build(case: Case, tmp: Path) -> World:
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# test repo\n")
    (repo / ".gitignore").write_text("build/\n*.log\n.env\n")
    git(repo, "add", "README.md", ".gitignore")
    git(repo, "commit", "-q", "-m", "initial commit")
    if any(a.submodule for a in case.agents):
        lib = tmp / "lib"
        lib.mkdir()
        git(lib, "init", "-q", "-b", "main")
        (lib / "lib.txt").write_text("lib\n")
        git(lib, "add", "lib.txt")
        git(lib, "commit", "-q", "-m", "lib init")
        git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
        git(repo, "commit", "-q", "-m", "add lib")
    git(repo, "branch", "develop")  # a base to change to, without what is merged into main later
    git(tmp, "init", "-q", "--bare", str(tmp / "remote.git"))
    git(repo, "remote", "add", "origin", str(tmp / "remote.git"))
    world = World(repo, agents.install(tmp))
    (repo / "fleet.yaml").write_text(spec_text(world, list(case.agents)))
    fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)

    def settled() -> bool:
        phases = {n: r["phase"] for n, r in status(repo).items()}
        if "Failed" in phases.values():
            logs = {n: (repo / ".git" / "fleet" / "logs" / FLEET / f"{n}.log").read_text(errors="replace")[-2000:]
                    for n, p in phases.items() if p == "Failed"}
            raise AssertionError(f"an agent failed while setting up: {phases}\n{logs}")
        return all(phases.get(a.name) == ("Running" if a.session else "Succeeded") for a in case.agents)

    wait_until(settled, timeout=60, interval=0.2)
    for a in case.agents:
        wt = repo / WT_ROOT / a.name
        if a.history == "merged":
            commit_file(wt, f"merged-{a.name}.txt", "merged work\n")
            git(repo, "merge", "-q", "--no-edit", a.branch)
        elif a.history == "pushed":
            commit_file(wt, f"pushed-{a.name}.txt", "pushed work\n")
            git(wt, "push", "-q", "-u", "origin", a.branch)
        elif a.history == "selfpushed":  # no remote for it: "." is this repository, so not pushed
            commit_file(wt, f"selfpushed-{a.name}.txt", "pushed to itself\n")
            git(wt, "push", "-q", "-u", ".", "HEAD")
        if a.submodule:  # a local commit in the submodule; the superproject's bump is merged
            git(wt, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
            (wt / "lib" / "lib.txt").write_text(f"patched by {a.name}\n")
            git(wt / "lib", "commit", "-qam", f"lib patch of {a.name}")
            world.lost[a.name] = git(wt / "lib", "rev-parse", "HEAD").strip()
            git(wt, "add", "lib")
            git(wt, "commit", "-q", "-m", "bump lib")
            merge_bump(repo, a.branch)
        if a.reflog:
            commit_file(wt, f"reflog-{a.name}.txt", "only the reflog keeps this\n")
            world.lost[a.name] = git(wt, "rev-parse", "HEAD").strip()
            git(wt, "reset", "-q", "--hard", "HEAD~1")
        if a.ahead:
            commit_file(wt, f"ahead-{a.name}.txt", "unmerged work\n")
        if a.stash:
            (wt / "README.md").write_text(f"stashed change of {a.name}\n")
            git(wt, "stash", "push", "-q", "-m", f"keep {a.name}")
        if a.switched:  # a branch the fleet does not own, with a commit of its own
            git(wt, "switch", "-q", "-c", f"topic/{a.name}", "main")
            commit_file(wt, f"topic-{a.name}.txt", "the user's topic\n")
        if a.in_progress:  # a conflicted merge of a user's side branch
            git(wt, "checkout", "-q", "-b", f"side/{a.name}")
            (wt / "README.md").write_text("side\n")
            git(wt, "commit", "-qam", "side")
            git(wt, "checkout", "-q", a.branch)
            (wt / "README.md").write_text("ours\n")
            git(wt, "commit", "-qam", "ours")
            merge = subprocess.run(["git", "merge", f"side/{a.name}"], cwd=wt, capture_output=True, check=False)
            assert merge.returncode != 0 and (Path(git(wt, "rev-parse", "--git-dir").strip()) / "MERGE_HEAD").exists()
        if a.dirty:
            (wt / "README.md").write_text(f"edited by hand in {a.name}\n")
        if a.untracked:
            (wt / "notes").mkdir(exist_ok=True)
            (wt / "notes" / f"idea-{a.name}.txt").write_text("not yet added\n")
        if a.ignored:
            (wt / "build").mkdir(exist_ok=True)
            (wt / "build" / "out.o").write_bytes(b"\x00artifact")
            (wt / "debug.log").write_text("log\n")
        if a.secret:
            (wt / ".env").write_text("TOKEN=secret\n")
        if a.locked:
            git(repo, "worktree", "lock", "--reason", "mine", str(wt))
        if a.process:
            world.sleepers.append(subprocess.Popen(["sleep", "300"], cwd=wt))
    if case.foreign_worktree:
        handmade = repo / WT_ROOT / "handmade"
        git(repo, "worktree", "add", "-q", "-b", "mine", str(handmade))
        (handmade / "README.md").write_text("my own edit\n")
        (handmade / "scratch.txt").write_text("mine\n")
    if case.user_branch:
        tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
        sha = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "user work").strip()
        git(repo, "branch", PREFIX + "user-topic", sha)
    return world


# ---------------------------------------------------------------------------- observing a world

def git_bytes(cwd: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def reachable(repo: Path) -> set[str]:
    """Every commit reachable from a ref (`--all` covers refs/fleet/* and refs/stash) or a stash entry."""
    commits = set(git(repo, "rev-list", "--all").split())
    if "refs/stash" in refs(repo):
        commits |= set(git(repo, "log", "-g", "--format=%H", "refs/stash").split())
    return commits


def files(wt: Path, *, ignored: bool) -> dict[str, bytes]:
    """path -> content of the worktree's files outside .git (non-ignored ones unless `ignored`)."""
    if ignored:
        return {p.relative_to(wt).as_posix(): p.read_bytes() for p in sorted(wt.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(wt).parts}
    listed = git_bytes(wt, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split(b"\0")
    paths = sorted({p.decode() for p in listed if p})
    return {p: (wt / p).read_bytes() for p in paths if (wt / p).is_file() and not (wt / p).is_symlink()}


def tree_files(repo: Path, commit: str) -> dict[str, bytes]:
    """path -> content of each file of `commit`'s tree (a submodule's gitlink is no file)."""
    entries = git_bytes(repo, "ls-tree", "-r", "-z", commit).split(b"\0")
    names = [e.split(b"\t", 1)[1].decode() for e in entries if e and e.split(b" ")[1] == b"blob"]
    return {n: git_bytes(repo, "cat-file", "blob", f"{commit}:{n}") for n in names}


def worktree_list(repo: Path) -> dict[Path, str]:
    """path -> its `git worktree list --porcelain` block."""
    blocks = git(repo, "worktree", "list", "--porcelain").strip().split("\n\n")
    return {Path(b.splitlines()[0].removeprefix("worktree ")).resolve(): b for b in blocks}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class Before:
    refs: dict[str, str]
    commits: set[str]
    stashes: str
    visible: dict[str, dict[str, bytes]]  # agent -> non-ignored files
    everything: dict[str, dict[str, bytes]]  # agent -> all files, ignored ones included
    head: dict[str, str]
    pids: dict[str, int]
    foreign: dict[str, bytes]


def record(case: Case, world: World) -> Before:
    repo = world.repo
    wts = {a.name: repo / WT_ROOT / a.name for a in case.agents}
    handmade = repo / WT_ROOT / "handmade"
    rows = status(repo)
    return Before(refs=refs(repo), commits=reachable(repo), stashes=git(repo, "stash", "list"),
                  visible={n: files(wt, ignored=False) for n, wt in wts.items()},
                  everything={n: files(wt, ignored=True) for n, wt in wts.items()},
                  head={n: git(wt, "rev-parse", "HEAD").strip() for n, wt in wts.items()},
                  pids={a.name: rows[a.name]["pid"] for a in case.agents if a.session},
                  foreign=files(handmade, ignored=True) if case.foreign_worktree else {})


# ---------------------------------------------------------------------------- acting and checking

def act(case: Case, world: World) -> subprocess.CompletedProcess[str]:
    extra = ["--archive"] if case.archive else []
    if case.act == "apply":
        kept = [a for a in case.agents if a.name not in case.targeted]
        if case.change == "rename":  # the targets, declared under new names: the old ones are undeclared
            kept += [AgentCase(f"{a.name}-new") for a in case.agents if a.name in case.targeted]
        (world.repo / "fleet.yaml").write_text(spec_text(world, kept, change=case.change))
        return fleet("apply", "fleet.yaml", "--yes", "--grace", "2", *extra, cwd=world.repo)
    return fleet("delete", "fleet.yaml", *(case.targets or ()), "--yes", "--grace", "2", *extra, cwd=world.repo)


def check(case: Case, world: World, before: Before, proc: subprocess.CompletedProcess[str]) -> None:
    repo = world.repo
    out = f"{case}\n--- exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == (3 if case.refused else 0), out

    # No commit became unreachable.
    lost = before.commits - reachable(repo)
    assert not lost, f"commits no longer reachable: {lost}\n{out}"
    after_refs = refs(repo)
    new_refs = set(after_refs) - set(before.refs)

    # Each worktree: pruned iff the rules say so; its files are in place or in a reachable commit.
    listed = worktree_list(repo)
    for a in case.agents:
        wt = (repo / WT_ROOT / a.name).resolve()
        archived = sorted(r for r in new_refs if r.startswith(f"{ARCHIVES}{a.name}/"))
        if case.removed(a):
            assert not wt.exists() and wt not in listed, f"{a.name} should have been pruned\n{out}"
            # archive-first: exactly one archive, of the work or (nothing at stake) a retention one
            assert len(archived) == 1, f"{a.name}: archives {archived}\n{out}"
            assert git(repo, "rev-parse", f"{archived[0]}^1").strip() == before.head[a.name], out
            retention = git(repo, "log", "-1", "--format=%s", archived[0]).startswith("fleet retention archive")
            assert retention == (not case.stake(a)), f"{a.name}: {archived[0]} of the wrong kind\n{out}"
            holder = archived[0] if case.stake(a) else before.head[a.name]
            assert tree_files(repo, holder) == before.visible[a.name], f"{a.name}: files lost\n{out}"
            if a.name in world.lost:  # only the reflog or the submodule held it: the archive does now
                assert world.lost[a.name] in git(repo, "rev-list", archived[0]), f"{a.name}: lost commit\n{out}"
        else:
            assert wt.is_dir() and wt in listed, f"{a.name} should have been left in place\n{out}"
            assert files(wt, ignored=True) == before.everything[a.name], f"{a.name}: files changed\n{out}"
            assert git(wt, "rev-parse", "HEAD").strip() == before.head[a.name], out
            assert ("\nlocked" in listed[wt]) == a.locked, out
            assert archived == [], f"{a.name} was archived but not pruned\n{out}"
        if a.session and (a.name in case.targeted or case.change in ("none", "rename")):
            # fleet stops its own session of a targeted agent (before any prune check), and only that
            assert alive(before.pids[a.name]) == (a.name not in case.targeted), out
        elif a.session:  # a base or root change is a spec change: the kept agent's session is replaced
            assert status(repo)[a.name]["phase"] == "Running", out

    # Only pruned agents' own branches went, nothing else moved (a user branch a tree had checked
    # out included); archives are the only new refs, with the branches of renamed agents.
    pruned_branches = {f"refs/heads/{a.branch}" for a in case.agents if case.removed(a)}
    renamed = {f"refs/heads/{PREFIX}{a.name}-new" for a in case.agents if case.change == "rename"}
    for ref, sha in before.refs.items():
        if ref in pruned_branches:
            assert ref not in after_refs, f"{ref} of a pruned agent still exists\n{out}"
        else:
            assert after_refs.get(ref) == sha, f"{ref} moved or vanished: {sha} -> {after_refs.get(ref)}\n{out}"
    assert all(r.startswith(ARCHIVES) or r in renamed for r in new_refs), f"unexpected new refs {new_refs}\n{out}"
    new_refs = {r for r in new_refs if r.startswith(ARCHIVES)}
    assert git(repo, "stash", "list") == before.stashes, out

    # What fleet does not own: the hand-made worktree (the user branch is among the refs above), processes.
    if case.foreign_worktree:
        handmade = (repo / WT_ROOT / "handmade").resolve()
        assert handmade in listed and files(handmade, ignored=True) == before.foreign, out
    for sleeper in world.sleepers:
        assert sleeper.poll() is None, f"fleet killed a process it does not own\n{out}"

    # `fleet archives` lists exactly the new archive refs.
    listing = json.loads(fleet("archives", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)
    assert sorted(x["ref"] for x in listing) == sorted(new_refs), out


def cleanup(world: World | None) -> None:
    if world is None:
        return
    for sleeper in world.sleepers:
        sleeper.kill()
        sleeper.wait()
    for pid in session_pids(world.repo):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# Pinned examples, so every run covers the corners whatever the seed draws: everything safe;
# one risk per worktree, refused without --archive; and --archive over what it can and cannot save.
SAFE = Case((AgentCase("w-a", history="merged", ignored=True), AgentCase("w-b", session=True, history="pushed"),
             AgentCase("w-c", history="pushed", ignored=True)), "apply", ("w-a", "w-b", "w-c"),
            foreign_worktree=True, user_branch=True)
SINGLE_RISKS = Case((AgentCase("w-a", history="merged", stash=True),
                     AgentCase("w-b", session=True, history="pushed", process=True),
                     AgentCase("w-c", history="pushed", untracked=True, ignored=True)), "apply", ("w-a", "w-b", "w-c"))
ARCHIVE_SINGLES = Case((AgentCase("w-a", history="merged", in_progress=True),
                        AgentCase("w-b", history="pushed", locked=True),
                        AgentCase("w-c", history="merged", dirty=True, ignored=True)), "delete", None, archive=True)
MIXED = Case((AgentCase("w-a", ahead=True, stash=True, dirty=True, untracked=True, ignored=True),
              AgentCase("w-b", session=True, history="merged", locked=True),
              AgentCase("w-c", history="pushed", process=True, untracked=True)), "delete", None, archive=True,
             foreign_worktree=True, user_branch=True)


# issue 14's classes: an upstream of ".", a reflog-only commit in a tree switched to a user's
# branch, a submodule's local commit, archived at once while the root moves; a safe tree on a
# user's branch next to a protected .env while both are renamed; merged work when base changes.
REACH = Case((AgentCase("w-a", history="selfpushed"), AgentCase("w-b", history="merged", reflog=True, switched=True),
              AgentCase("w-c", history="merged", submodule=True, ignored=True)), "apply", ("w-a", "w-b", "w-c"),
             archive=True, change="root")
SWITCH_SECRET = Case((AgentCase("w-a", history="merged", switched=True, ignored=True),
                      AgentCase("w-b", history="pushed", secret=True)), "apply", ("w-a", "w-b"), archive=True,
                     change="rename")
BASE_CHANGE = Case((AgentCase("w-a", history="merged"), AgentCase("w-b", history="pushed"),
                    AgentCase("w-c", session=True, history="merged")), "apply", ("w-a", "w-b"), change="base")
# found by hypothesis: merged work, the base changed, and the tree switched to a user's branch
# made from main after the merge: that branch holds the work, so the prune loses nothing
BASE_CHANGE_SWITCHED = Case((AgentCase("w-a", history="merged", switched=True),
                             AgentCase("w-b", history="merged")), "apply", ("w-a", "w-b"), change="base")

# found by hypothesis: two trees' submodule bumps both merged (the second conflicts on the
# gitlink when built), each with its own local submodule commit at stake
TWO_SUBMODULES = Case((AgentCase("w-a", history="merged"), AgentCase("w-b", history="merged", submodule=True),
                       AgentCase("w-c", history="merged", submodule=True)), "apply", ("w-a", "w-b", "w-c"))


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
@example(case=SAFE)
@example(case=SINGLE_RISKS)
@example(case=ARCHIVE_SINGLES)
@example(case=MIXED)
@example(case=REACH)
@example(case=SWITCH_SECRET)
@example(case=BASE_CHANGE)
@example(case=BASE_CHANGE_SWITCHED)
@example(case=TWO_SUBMODULES)
def test_no_deletion_path_loses_work(case: Case, tmp_path: Path) -> None:
    subset = len(case.targeted) < len(case.agents)
    event(f"{case.act}{' --archive' if case.archive else ''}{' (subset)' if subset else ''}")
    event(f"pruned {sum(case.removed(a) for a in case.agents)} (archived "
          f"{sum(case.removed(a) and case.stake(a) for a in case.agents)}), "
          f"refused {sum(a.name in case.targeted and not case.removed(a) for a in case.agents)}")
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:  # a fresh repo per example
        world = None
        try:
            world = build(case, Path(tmp))
            before = record(case, world)
            proc = act(case, world)
            check(case, world, before, proc)
        finally:
            cleanup(world)

