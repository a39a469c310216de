"""The session actor: one agent session on one node of a Ray cluster.

Ray imports this module on the node, so it needs only the runtime adapters, git, and the
parts of fleet shared with the local engine: what a clone holds is gathered by
observe/gittree.py and judged by observe/stake.py (the rules a local prune applies), and
archived by act/archive.py.
The actor owns a node-local directory for its agent:

    <workdir>/<node id>/<fleet>/<agent>/repo         a clone of the fleet's remote, on the agent's branch
    <workdir>/<node id>/<fleet>/<agent>/session.log  the session's output, appended across runs
    <workdir>/<node id>/<fleet>/<agent>/exit.json    written by host.py when a run ends

Nodes share no disk, so the remote is where work survives. The branch is pushed after
every commit (a post-commit hook in the clone), every `pushInterval` while the session
runs, and when it ends. The clone is never deleted while anything in it is not on the
remote: `release` pushes the branch, archives what cannot go there (uncommitted and
untracked files, commits on other branches, stashes) as one commit under
refs/fleet/archive/... on the remote, and refuses when either push fails.

The class is plain Python (ray.remote wraps it in cluster.py); its methods return plain
dicts, so a driver of another fleet version can still read them.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...act.archive import snapshot_commit
from ...errors import FleetError
from ...observe.gittree import (
    checked,
    clean_env,
    git_env,
    last_line,
    plain_index,
    rev,
    run_git,
    status_paths,
    tree_facts,
)
from ...observe.reach import local_tips, ref_facts, submodule_commits, unsafe_commits
from ...observe.stake import TreeFacts, anchors, judge

RUN_MARKER = "--- fleet: "  # as observe/results.py expects before each run's output
_IDENTITY = {"GIT_AUTHOR_NAME": "fleet", "GIT_AUTHOR_EMAIL": "fleet@localhost",
             "GIT_COMMITTER_NAME": "fleet", "GIT_COMMITTER_EMAIL": "fleet@localhost"}
_HOOK = """#!/bin/sh
# Installed by fleet (placement.engine ray): every commit on the agent's branch goes to the
# remote at once, so a lost node loses no commit. A failed push is retried by the session actor.
# It goes to this attempt's own ref (remote.py "Fencing"); the controller moves the branch.
[ "$(git symbolic-ref -q HEAD)" = "refs/heads/{branch}" ] || exit 0
git push -q origin "refs/heads/{branch}:{target}" >/dev/null 2>&1 || true
"""
ATTEMPTS = "refs/fleet/attempts"  # as remote.py names them
_TRACKED = "refs/remotes/origin/fleet-attempts"  # where the clone tracks its attempts' refs (pushed = there)


@dataclass(frozen=True)
class SessionConfig:
    """What an actor is for; fixed for its lifetime."""

    fleet: str
    agent: str
    remote: str  # git URL (or path) every node can reach
    branch: str
    base: str
    workdir: str  # absolute or ~/...; expanded on the node
    push_interval: float = 60.0


@dataclass(frozen=True)
class Launch:
    """One run of the session, prepared by the driver (argv is built here, in the clone)."""

    run_id: str
    runtime: str
    prompt: str
    session_id: str
    spec_hash: str
    model: str | None = None
    args: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    locks: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # literals only: Ray keeps these in its control store
    resume_message: str | None = None  # set: continue the conversation with this message
    # `{fromEnv: VAR}` by reference (KEY -> VAR): resolved on the node, in `resolve_secrets`, so
    # no secret value is ever an actor argument (which the cluster's control store keeps)
    env_from: dict[str, str] = field(default_factory=dict)
    secrets_dir: str | None = None  # placement.secretsDir: one file per VAR on each node
    generation: int = 0  # the attempt (remote.py "Fencing"); 0: an older driver, push to the branch itself
    lock_slots: dict[str, int] = field(default_factory=dict)  # spec.locks: `fleet lock` across the cluster (locks.py)
    max_budget_usd: float | None = None  # the run's budget reservation (claude: --max-budget-usd)


class SessionActor:
    def __init__(self, config: SessionConfig, launch: Launch | None = None) -> None:
        import ray

        self.cfg = config
        self.instance = uuid.uuid4().hex  # a new actor's log starts over; the driver tracks offsets per instance
        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.hostname = socket.gethostname()
        self.home = Path(os.path.expanduser(config.workdir)) / self.node_id[:12] / config.fleet / config.agent
        self.clone = self.home / "repo"
        self.log = self.home / "session.log"
        self.exit_file = self.home / "exit.json"
        self._lock = threading.RLock()
        self._push_lock = threading.Lock()
        self._spawner = _Spawner()
        self.state = "idle"  # idle | preparing | running | exited | released
        self.proc: subprocess.Popen[bytes] | None = None
        self.launch: Launch | None = None
        self.exit_code: int | None = None
        self.cannot_start: dict[str, Any] | None = None  # the host could not start the program (exit 127)
        self.error: str | None = None
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.push_error: str | None = None
        self.last_push: float | None = None
        self._shipped = 0  # how much of the log the fleet's control actor has (lease.py)
        self._ship_lock = threading.Lock()
        threading.Thread(target=self._pusher, name="fleet-pusher", daemon=True).start()
        if launch is not None:
            # the constructor's arguments are kept by the cluster, unlike a method call whose
            # driver has exited: a run handed over here starts whenever the actor is placed
            self.state = "preparing"
            threading.Thread(target=self._start, args=(launch,), name="fleet-start", daemon=True).start()

    # ---- the driver's calls -------------------------------------------------------------

    def start(self, launch: Launch) -> dict[str, Any]:
        """Run the session again in this clone (a restart, a resume, a replaced spec)."""
        with self._lock:
            if self.state in ("preparing", "running"):
                raise RuntimeError(f"a session of {self.cfg.agent} is already {self.state}")
            self.state = "preparing"
        self._start(launch)
        return self.status()

    def status(self) -> dict[str, Any]:
        with self._lock:
            proc, launch = self.proc, self.launch
            data: dict[str, Any] = {
                "agent": self.cfg.agent, "state": self.state, "instance": self.instance,
                "node_id": self.node_id, "node_ip": self.node_ip, "hostname": self.hostname,
                "clone": str(self.clone), "pid": proc.pid if proc is not None and self.state == "running" else None,
                "run_id": launch.run_id if launch else None, "spec_hash": launch.spec_hash if launch else None,
                "session_id": launch.session_id if launch else None, "exit_code": self.exit_code,
                "cannot_start": self.cannot_start,
                "started_at": self.started_at, "finished_at": self.finished_at, "error": self.error,
                "push_error": self.push_error, "last_push": self.last_push, "log_size": _size(self.log),
                "generation": launch.generation if launch else None,
            }
        data.update(self._git_facts())
        data["last_progress"] = max([t for t in (_mtime(self.log), _mtime(self.clone / ".git" / "index"),
                                                 _mtime(self.clone / ".git" / "HEAD"),
                                                 _mtime(self.clone / ".git" / "logs" / "HEAD"),
                                                 _epoch(self.started_at)) if t is not None], default=None)
        return data

    def given(self) -> dict[str, Any]:
        """What the driver handed this actor (its config and current run), as the cluster keeps it."""
        with self._lock:
            return {"config": asdict(self.cfg), "launch": asdict(self.launch) if self.launch else None}

    def read_log(self, offset: int, limit: int = 4 << 20) -> tuple[bytes, int]:
        """Bytes of the session log from `offset` (at most `limit`), and the log's size."""
        try:
            with open(self.log, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(min(offset, size))
                return f.read(limit), size
        except OSError:
            return b"", 0

    def stop(self, grace: float = 10.0) -> dict[str, Any]:
        """TERM the session's process group, KILL it after `grace` seconds, then push."""
        with self._lock:
            proc = self.proc if self.state == "running" else None
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            deadline = time.monotonic() + 30
            while self.state == "running" and time.monotonic() < deadline:  # the watcher records the exit
                time.sleep(0.05)
        self.push()
        return self.status()

    def run_gate(self, name: str, run: str, timeout: float) -> dict[str, Any]:
        """`sh -c RUN` in the clone with a timeout, as act/gates.py does in a local worktree."""
        env = {**clean_env(), "FLEET_AGENT": self.cfg.agent, "FLEET_BRANCH": self.cfg.branch, "FLEET_GATE": name}
        start = time.monotonic()
        proc = subprocess.Popen(["sh", "-c", run], cwd=self.clone, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            out, code = f"{out}\n(gate timed out after {timeout:g}s)", None
        seconds = time.monotonic() - start
        with self.log.open("a", encoding="utf-8") as f:
            last = next((line for line in reversed(out.splitlines()) if line.strip()), "")
            how = "timed out" if code is None else f"exit {code}"
            summary = f"{how}; {last[:200]}" if last else how
            verdict = "passed" if code == 0 else "FAILED"
            f.write(f"--- fleet gate {name}: {run!r} {verdict} ({summary}, {seconds:.1f}s)\n")
            f.write(out if out.endswith("\n") or not out else out + "\n")
        return {"exit_code": code, "output": out, "seconds": seconds}

    def release(self, archive_ref: str | None, log_offset: int = 0,
                retention_ref: str | None = None) -> dict[str, Any]:
        """Make sure nothing is only here, then delete this node's clone and log.

        Pushes the branch; anything else at stake is committed as one snapshot and pushed
        to `archive_ref` (None: refuse instead). Archive first: with nothing at stake, a
        cheap retention snapshot is pushed to `retention_ref` before the clone goes (a
        driver of an older fleet passes none). Returns {"ok", "refused", "archived",
        "stake", "log"} where "log" is the log from `log_offset`, read before it is deleted.
        """
        with self._lock:
            if self.state in ("preparing", "running"):
                return {"ok": False, "refused": f"the session is still {self.state}", "archived": None,
                        "stake": {}, "log": b""}
        log, _ = self.read_log(log_offset)
        archived = None
        if (self.clone / ".git").is_dir():
            self.push()
            facts = self._facts()
            stake = judge(facts)
            if not stake.archivable:  # no archive can hold these: the clone stays, whatever was asked
                left = [f"{op} in progress" for op in stake.in_progress]
                left += [f"{len(stake.processes)} process(es) running"] if stake.processes else []
                left += [f"{len(stake.nested_repos)} nested git repo(s)"] if stake.nested_repos else []
                return self._refuse(f"{', '.join(left)} in the clone", facts, log)
            if not stake.safe:
                if archive_ref is None:
                    why = "; ".join(filter(None, [
                        f"push failed: {self.push_error}" if self.push_error else "",
                        f"{len(stake.commits)} commit(s) not on the remote" if stake.commits else "",
                        f"{len(stake.dirty)} uncommitted file(s)" if stake.dirty else "",
                        f"{len(stake.stashes)} stash entr(ies)" if stake.stashes else ""]))
                    return self._refuse(why, facts, log)
                problem = self._archive(archive_ref)
                if problem:
                    return self._refuse(problem, facts, log)
                archived = archive_ref
            elif retention_ref is not None:
                problem = self._archive(retention_ref, retention=True)
                if problem:
                    return self._refuse(problem, facts, log)
        with self._lock:
            self.state = "released"
        shutil.rmtree(self.home, ignore_errors=True)
        return {"ok": True, "refused": None, "archived": archived, "stake": {}, "log": log}

    def push(self) -> str | None:
        """Push the agent's branch; returns the error (also kept for status), None when it is on the remote."""
        if not (self.clone / ".git").is_dir():
            return None
        with self._push_lock:
            ref = f"refs/heads/{self.cfg.branch}"
            target, tracked = self._target()
            local, pushed = rev(self.clone, ref), rev(self.clone, tracked)
            if local is None or local == pushed:
                self.push_error = None
                return None
            if target == ref:  # a run of an older driver: the branch itself
                res = _git(self.clone, "push", "-q", "origin", f"{ref}:{ref}")
            else:  # this attempt's ref, only ever written by this attempt: compare-and-swap on what it pushed
                res = _git(self.clone, "push", "-q", f"--force-with-lease={target}:{pushed or ''}", "origin",
                           f"{ref}:{target}")
            self.push_error = None if res.returncode == 0 else last_line(res.stderr) or "git push failed"
            if res.returncode == 0:
                self.last_push = time.time()
            return self.push_error

    # ---- inside the node ----------------------------------------------------------------

    def _target(self) -> tuple[str, str]:
        """(the ref this attempt pushes on the remote, where the clone tracks it)."""
        gen = self.launch.generation if self.launch is not None else 0
        if gen <= 0:
            return f"refs/heads/{self.cfg.branch}", f"refs/remotes/origin/{self.cfg.branch}"
        return f"{ATTEMPTS}/{self.cfg.fleet}/{self.cfg.branch}/{gen}", f"{_TRACKED}/{gen}"

    def _start(self, launch: Launch) -> None:
        with self._lock:
            self.launch = launch  # status names the run (and its spec) while the clone is prepared
        try:
            self._prepare_clone()
            argv, env = self._argv_env(launch)
            self._spawn(launch, argv, env)
        except Exception as exc:  # noqa: BLE001 - reported as a failed run, never an actor crash
            message = f"fleet: cannot start the session on node {self.node_ip}: {exc}"
            self.home.mkdir(parents=True, exist_ok=True)
            with self.log.open("a", encoding="utf-8") as f:
                f.write(f"{RUN_MARKER}start {_stamp()}: on node {self.node_ip} ({self.node_id[:8]})\n{message}\n")
            with self._lock:
                self.launch, self.proc = launch, None
                self.state, self.exit_code, self.error = "exited", 127, message
                self.started_at = self.finished_at = _now()

    def _prepare_clone(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        branch = self.cfg.branch
        if (self.clone / ".git").is_dir():
            # a clone left on this node by an earlier actor holds the freshest work: keep it
            _check(_git(self.clone, "fetch", "-q", "origin"), "git fetch")
            behind = _git(self.clone, "merge-base", "--is-ancestor", "HEAD", f"origin/{branch}").returncode == 0
            if behind and not status_paths(_git(self.clone, "status", "--porcelain=v1", "-z",
                                                "--untracked-files=all").stdout):
                _git(self.clone, "merge", "-q", "--ff-only", f"origin/{branch}")
        else:
            if self.clone.exists():  # not a clone: keep it aside, never delete what is not ours
                self.clone.rename(self.home / f"repo.aside-{int(time.time())}")
            _check(_git(self.home, "clone", "-q", "--no-checkout", self.cfg.remote, str(self.clone)), "git clone")
            if rev(self.clone, f"refs/remotes/origin/{branch}") is None:
                raise RuntimeError(f"branch {branch} does not exist on the remote {self.cfg.remote}")
            _check(_git(self.clone, "checkout", "-q", "-B", branch, "--track", f"origin/{branch}"), "git checkout")
        # this fleet's attempt refs of the branch are tracked (so a push to one updates its
        # remote-tracking ref and counts as pushed: clone_facts reads --remotes=origin)
        spec = f"+{ATTEMPTS}/{self.cfg.fleet}/{branch}/*:{_TRACKED}/*"
        fetches = _git(self.clone, "config", "--get-all", "remote.origin.fetch").stdout.split()
        if spec not in fetches:
            _check(_git(self.clone, "config", "--add", "remote.origin.fetch", spec), "git config")
        target, tracked = self._target()
        if target.startswith(ATTEMPTS):  # created by the controller at the branch's tip: pushes lease on it
            _check(_git(self.clone, "fetch", "-q", "origin", f"+{target}:{tracked}"), "git fetch")
        hook = self.clone / ".git" / "hooks" / "post-commit"
        hook.parent.mkdir(parents=True, exist_ok=True)
        hook.write_text(_HOOK.format(branch=branch, target=self._target()[0]))
        hook.chmod(0o755)

    def _argv_env(self, launch: Launch) -> tuple[list[str], dict[str, str]]:
        from ...runtimes import get_runtime
        from ...runtimes.base import SessionRequest

        runtime = get_runtime(launch.runtime)
        req = SessionRequest(agent=self.cfg.agent, workdir=self.clone, prompt=launch.prompt,
                             session_id=launch.session_id, model=launch.model, args=tuple(launch.args),
                             command=tuple(launch.command) if launch.command else None, locks=tuple(launch.locks),
                             max_budget_usd=launch.max_budget_usd)
        argv = runtime.resume_argv(req, launch.resume_message) if launch.resume_message is not None \
            else runtime.start_argv(req)
        if argv is None:
            raise RuntimeError(f"runtime {launch.runtime} cannot resume this session")
        env = clean_env()
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env.update(launch.env)
        env.update(resolve_secrets(launch.env_from, launch.secrets_dir))
        env.update(runtime.env(req))
        env["FLEET_LOCK_DIR"] = str(self.home.parent / ".locks")  # an older fleet's node-local locks
        # `fleet lock` in the session takes its slots from the cluster (locks.py), with the declared counts
        import ray

        context = ray.get_runtime_context()
        env.update({"FLEET_LOCK_RAY": context.namespace, "FLEET_RAY_ADDRESS": context.gcs_address,
                    "FLEET_LOCK_SLOTS": json.dumps(launch.lock_slots, sort_keys=True)})
        return argv, env

    def _spawn(self, launch: Launch, argv: list[str], env: dict[str, str]) -> None:
        self.exit_file.unlink(missing_ok=True)
        kind = "resume" if launch.resume_message is not None else "start"
        with self.log.open("ab") as out:
            out.write(f"{RUN_MARKER}{kind} {_stamp()}: on node {self.node_ip} ({self.node_id[:8]}): "
                      f"{' '.join(argv)[:300]}\n".encode(errors="surrogateescape"))
            out.flush()
            cmd = [sys.executable, "-m", "reconciler.engines.ray.host", "--exit-file", str(self.exit_file),
                   "--parent", str(os.getpid()), "--", *argv]
            proc = self._spawner.call(lambda: subprocess.Popen(
                cmd, cwd=self.clone, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True))
        with self._lock:
            self.proc, self.launch, self.state = proc, launch, "running"
            self.exit_code = self.error = self.finished_at = self.cannot_start = None
            self.started_at = _now()
        threading.Thread(target=self._watch, args=(proc,), name="fleet-watch", daemon=True).start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        recorded, cannot_start = _read_exit(self.exit_file)
        with self._lock:
            if self.proc is not proc:
                return
            self.exit_code = recorded if recorded is not None else (128 - code if code < 0 else code)
            self.cannot_start = cannot_start
            self.finished_at = _now()
            self.state = "exited"
        self.push()
        self.ship_log()  # the run's output reaches the fleet machine even if no pass reads it from here

    def _pusher(self) -> None:
        while True:
            time.sleep(max(self.cfg.push_interval, 1.0))
            if self.state == "running":
                try:
                    self.push()
                except Exception:  # noqa: BLE001 - the next interval tries again
                    pass
                self.ship_log()

    def ship_log(self) -> None:
        """Send what the log gained to the fleet's control actor (on the head), so it outlives this node."""
        import ray

        with self._ship_lock:
            data, _size = self.read_log(self._shipped)
            if not data:
                return
            try:
                control = ray.get_actor("fleet::controller", namespace=ray.get_runtime_context().namespace)
                reached: Any = ray.get(control.put_log.remote(self.cfg.agent, self.instance, self._shipped, data),
                                       timeout=30)
                self._shipped = int(reached)
            except Exception:  # noqa: BLE001 - no control actor (an older driver) or unreachable: next time
                return

    def _git_facts(self) -> dict[str, Any]:
        if not (self.clone / ".git").is_dir():
            return {**stake_status(TreeFacts()), "ahead": None, "head": None}
        facts = self._facts()
        base = f"origin/{self.cfg.base}" if rev(self.clone, f"refs/remotes/origin/{self.cfg.base}") else self.cfg.base
        ahead = _git(self.clone, "rev-list", "--count", f"{base}..HEAD")
        return {**stake_status(facts), "ahead": int(ahead.stdout) if ahead.returncode == 0 else None,
                "head": rev(self.clone, "HEAD")}

    def _facts(self) -> TreeFacts:
        """What deleting the clone would lose, as facts; the session's own processes are not
        counted while it runs (they are stopped first), as a local prune leaves out its sessions'."""
        with self._lock:
            proc = self.proc if self.state == "running" else None
        return clone_facts(self.clone, ignore_groups=frozenset([proc.pid]) if proc is not None else frozenset())

    def _archive(self, ref: str, *, retention: bool = False) -> str | None:
        """Commit everything at stake as one snapshot and push it to `ref`; the problem, or None.
        Its parents: HEAD, every branch, the stash entries and every reflog-only commit
        (observe/reach.py `local_tips`), as a local archive's."""
        tips = local_tips(self.clone / ".git", self.clone)
        stash = checked(_git(self.clone, "stash", "list", "--format=%H"), self.clone, "stash list")
        title = "fleet retention archive" if retention else "fleet archive"
        subject = f"{title} of {self.cfg.agent} (fleet {self.cfg.fleet}, branch {self.cfg.branch}, " \
                  f"node {self.node_ip} {self.node_id[:8]})"
        head = rev(self.clone, "HEAD")
        if len(tips) > 1:  # the fewest commits that hold them all
            res = _git(self.clone, "merge-base", "--independent", *tips)
            tips = [*([head] if head else []), *res.stdout.split()] if res.returncode == 0 else tips
        # what it holds, in the `Fleet-*:` lines a local archive has (act/archive.py), for `fleet restore`
        tip = rev(self.clone, f"refs/heads/{self.cfg.branch}")
        lines = [f"Fleet-Kind: {'retention' if retention else 'work'}", f"Fleet-Fleet: {self.cfg.fleet}",
                 f"Fleet-Agent: {self.cfg.agent}"]
        lines += [f"Fleet-Branch: {self.cfg.branch} {tip}"] if tip else []
        lines += [f"Fleet-Head: {head}"] if head else []
        lines += [f"Fleet-Worktree: {self.node_ip}:{self.clone}"]
        try:
            commit = snapshot_commit(self.clone, [*tips, *stash.split()], subject + "\n\n" + "\n".join(lines),
                                     tree=None if retention else self.clone, env=_IDENTITY)
        except FleetError as exc:
            return exc.message
        pushed = _git(self.clone, "push", "-q", "origin", f"{commit}:{ref}")
        if pushed.returncode != 0:
            return f"cannot push the archive to {ref}: {last_line(pushed.stderr)}"
        return None

    def _refuse(self, why: str, facts: TreeFacts, log: bytes) -> dict[str, Any]:
        return {"ok": False, "refused": why, "archived": None, "stake": stake_status(facts), "log": log}


def resolve_secrets(refs: dict[str, str], secrets_dir: str | None, environ: dict[str, str] | None = None
                    ) -> dict[str, str]:
    """`{KEY: VAR}` references resolved on this node: the file `<secrets_dir>/VAR` (a mounted
    secret; one trailing newline dropped), else the node's environment variable VAR."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    for key, var in refs.items():
        path = Path(os.path.expanduser(secrets_dir), var) if secrets_dir else None
        if path is not None and path.is_file():
            text = path.read_text()
            out[key] = text[:-1] if text.endswith("\n") else text
        elif var in environ:
            out[key] = environ[var]
        else:
            where = f"no file {path} and " if path is not None else ""
            raise RuntimeError(f"env {key} reads {var}: {where}{var} is not set in the node's environment "
                               "(set it where Ray starts on the node, or put it in placement.secretsDir)")
    return out


def clone_facts(clone: Path, *, ignore_groups: frozenset[int] = frozenset()) -> TreeFacts:
    """What deleting a clone on its node would lose, as the facts `judge` reads.

    The tree as a local worktree is read (observe/gittree.py: status, hidden edits, nested
    repos, in-progress operations, processes inside but not of `ignore_groups`); its
    commits are those on HEAD or a branch that no remote-tracking ref has (not pushed: the
    clone's "unreachable from base or upstream"); its stashes are all of the clone's.
    """
    git_dir = clone / ".git"
    tree = tree_facts(clone, git_dir, plain_index=plain_index(git_dir), ignore_groups=ignore_groups)
    # the one reachability rule (observe/stake.py `anchors`): HEAD, every branch and every reflog
    # entry, against the remote-tracking refs of a remote with a URL and the archive refs
    tips = local_tips(git_dir, clone)  # an unborn HEAD (a clone cut short) holds nothing
    safe = anchors(ref_facts(clone, None), base=None, branch=None)
    unpushed = [*unsafe_commits(clone, tips, safe), *submodule_commits(clone, git_dir)]
    stashes = checked(_git(clone, "stash", "list", "--format=%H %gs"), clone, "stash list")
    return replace(tree, commits=tuple(unpushed), stashes=tuple(line for line in stashes.splitlines() if line))


def stake_status(facts: TreeFacts) -> dict[str, Any]:
    """The facts and their verdict as a status carries them: "facts" for a driver to judge,
    the verdict's lists under the names older drivers read ("unpushed" is the commits)."""
    stake = judge(facts)
    return {"dirty": stake.dirty, "unpushed": stake.commits, "stashes": stake.stashes,
            "in_progress": stake.in_progress, "processes": stake.processes, "nested_repos": stake.nested_repos,
            "facts": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(facts).items()}}


class _Spawner:
    """Starts processes from one thread that lives as long as the actor.

    The kernel's parent-death signal (host.py) fires when the *thread* that forked the
    host exits; Ray may retire the thread a method ran on, so forking there would kill
    a healthy session.
    """

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[], Any], list[Any], threading.Event]] = queue.Queue()
        threading.Thread(target=self._serve, name="fleet-spawner", daemon=True).start()

    def call(self, fn: Callable[[], Any]) -> Any:
        box: list[Any] = []
        done = threading.Event()
        self._calls.put((fn, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _serve(self) -> None:
        while True:
            fn, box, done = self._calls.get()
            try:
                box.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box.append(exc)
            done.set()


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """git on the node: a call stuck for 10 minutes (a remote that does not answer) gives up."""
    return run_git(cwd, *args, env=env or git_env(), timeout=600)


def _check(res: subprocess.CompletedProcess[str], what: str) -> None:
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed: {last_line(res.stderr) or res.returncode}")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_exit(path: Path) -> tuple[int | None, dict[str, Any] | None]:
    """The exit code the host recorded, and why its program did not start, if it did not."""
    try:
        data = json.loads(path.read_text())
        cannot = data.get("cannot_start")
        return int(data["exit_code"]), cannot if isinstance(cannot, dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
