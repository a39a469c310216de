"""Starting and stopping detached agent sessions."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..errors import FleetError
from ..observe.gittree import clean_env
from ..observe.processes import ENV_AGENT, ENV_FLEET, ENV_HASH, ENV_REPO, ENV_SESSION, create_time, is_alive
from ..runtimes import get_runtime
from ..runtimes.base import SessionRequest
from ..spec.desired import DesiredAgent
from ..spec.models import FromEnv
from ..store.records import CannotStart
from .failpoints import failpoint
from .lifecycle import RUN_MARKER
from .programs import session_path


@dataclass(frozen=True)
class Started:
    pid: int
    create_time: float
    session_id: str
    argv: list[str]
    cannot_start: CannotStart | None = None  # the program did not start (the host recorded exit 127)


def agent_env(agent: DesiredAgent) -> dict[str, str]:
    """The agent's `env`, with `fromEnv` values read from fleet's environment (every engine)."""
    env: dict[str, str] = {}
    for key, value in agent.env.items():
        if isinstance(value, FromEnv):
            if value.fromEnv not in os.environ:
                raise FleetError(f"agent {agent.name}: env {key} reads ${value.fromEnv}, which is not set",
                                 hint=f"export {value.fromEnv} in the environment that runs fleet")
            env[key] = os.environ[value.fromEnv]
        else:
            env[key] = value
    return env


def owner_env(agent: DesiredAgent, *, fleet: str, repo_id: str, session_id: str) -> dict[str, str]:
    """The owner variables: how observe recognises the session's processes as this agent's."""
    return {ENV_FLEET: fleet, ENV_REPO: repo_id, ENV_AGENT: agent.name, ENV_HASH: agent.spec_hash,
            ENV_SESSION: session_id, "FLEET_BRANCH": agent.branch}


def resume_env(resume: tuple[str, str] | None) -> dict[str, str]:
    """What a resumed run is told (the command runtime reads these; CLIs get the message as a turn)."""
    return {"FLEET_RESUME": "1", "FLEET_MESSAGE": resume[1]} if resume else {}


def session_argv(agent: DesiredAgent, session_id: str, resume: tuple[str, str] | None) -> list[str]:
    """The runtime's argv for a start or a resume; FleetError for a spec it refuses."""
    runtime = get_runtime(agent.tier.runtime)
    req = session_request(agent, session_id)
    try:
        argv = runtime.resume_argv(req, resume[1]) if resume else runtime.start_argv(req)
    except ValueError as exc:
        raise FleetError(f"agent {agent.name}: {exc}") from None
    if argv is None:
        raise FleetError(f"runtime {runtime.name} cannot resume this session")
    return argv


def session_request(agent: DesiredAgent, session_id: str) -> SessionRequest:
    return SessionRequest(agent=agent.name, workdir=agent.worktree, prompt=agent.prompt, session_id=session_id,
                          model=agent.tier.model, args=tuple(agent.tier.args), command=agent.command,
                          locks=agent.locks, max_budget_usd=agent.max_budget_usd)


def session_env(agent: DesiredAgent, *, fleet: str, repo_id: str, lock_dir: Path,
                session_id: str) -> dict[str, str]:
    """A local session's environment: ours, the agent's env, and the owner variables."""
    # without GIT_DIR & co: fleet run from a git hook would point the agent's git at the hook's repo
    env = {**clean_env(), **agent_env(agent)}
    env["PATH"] = session_path(env.get("PATH"))  # so `fleet lock` and our python resolve in the session
    env.update(owner_env(agent, fleet=fleet, repo_id=repo_id, session_id=session_id))
    env["FLEET_LOCK_DIR"] = str(lock_dir)
    return env


@dataclass(frozen=True)
class Launch:
    """A session ready to start: everything that can fail for a bad spec has been checked."""

    agent: DesiredAgent
    argv: list[str]
    env: dict[str, str]
    session_id: str
    resume: bool


def prepare(agent: DesiredAgent, *, fleet: str, repo_id: str, lock_dir: Path,
            resume: tuple[str, str] | None = None, extra_env: dict[str, str] | None = None) -> Launch:
    """Build argv and env. `resume` = (session_id, message). Raises FleetError for a bad spec
    (a missing fromEnv variable, a refused flag), before anything is stopped or started."""
    session_id = resume[0] if resume else str(uuid.uuid4())
    argv = session_argv(agent, session_id, resume)
    env = session_env(agent, fleet=fleet, repo_id=repo_id, lock_dir=lock_dir, session_id=session_id)
    env.update(get_runtime(agent.tier.runtime).env(session_request(agent, session_id)))
    env.update(resume_env(resume))
    env.update(extra_env or {})
    return Launch(agent=agent, argv=argv, env=env, session_id=session_id, resume=resume is not None)


def launch(prepared: Launch, *, log: Path, exit_file: Path, spend_file: Path | None = None) -> Started:
    """Start the prepared session detached, output appended to `log`. `spend_file`: a claude
    session's host receives its cost metrics and writes them there (act/spend_receiver.py)."""
    agent, argv = prepared.agent, prepared.argv
    log.parent.mkdir(parents=True, exist_ok=True)
    exit_file.unlink(missing_ok=True)
    spend = []
    if spend_file is not None:
        spend_file.unlink(missing_ok=True)  # the last run's figures are in the ledger
        spend = ["--spend-file", str(spend_file)]
    with log.open("ab") as out:
        header = f"{RUN_MARKER}{'resume' if prepared.resume else 'start'} " \
                 f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {_one_line(' '.join(argv))[:300]}\n"
        out.write(header.encode(errors="surrogateescape"))  # an argument's bytes as they are, UTF-8 or not
        out.flush()
        runner = subprocess.run(
            [sys.executable, "-m", "reconciler.act.session_host", "--exit-file", str(exit_file), *spend,
             "--", *argv],
            cwd=agent.worktree, env=prepared.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out,
            check=False, timeout=30)
    # line 1: the session's pid; line 2, only if the program could not start: why (JSON)
    pid_text, _, cannot_text = runner.stdout.decode(errors="replace").strip().partition("\n")
    if runner.returncode != 0 or not pid_text.isdigit():
        raise FleetError(f"agent {agent.name}: session runner failed (exit {runner.returncode}); see {log}")
    pid = int(pid_text)
    created = create_time(pid)
    if created is None:  # it already finished; the exit file tells how
        created = 0.0
    cannot = CannotStart.from_json(_json_or_none(cannot_text)) if cannot_text.strip() else None
    return Started(pid=pid, create_time=created, session_id=prepared.session_id, argv=argv, cannot_start=cannot)


def _one_line(text: str) -> str:
    """The header stays one line (a resume message has several): `fleet logs` tells it from the output."""
    return " ".join(text.split("\n"))


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def stop(pid: int, created: float | None, *, grace: float = 10.0) -> bool:
    """TERM the session's process group, then KILL after `grace` seconds.

    Signals only a pid whose create-time matches the record (never a reused pid).
    Returns True if it was running.
    """
    if not is_alive(pid, created):
        return False
    _signal_group(pid, signal.SIGTERM)
    failpoint("stop:after-signal")
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return True
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies do not count)?

    Polled every 50 ms while a session stops, so it is cheap: an empty group is known
    from one signal-0 call; otherwise the group is found by getpgid (a syscall) and only
    its members' status is read, never every process's.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a member we may not signal: still look
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.AccessDenied:
            return True  # in the group, state unknown: count it as running
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False
