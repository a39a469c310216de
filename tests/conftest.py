"""Shared fixtures: isolated git, real temp repos, and running the real `fleet` CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
FLEETS = ROOT / "fleets"

# The Ray clusters tests start are bound to 127.0.0.1, and Ray reads this switch once, when it is
# imported (engines/ray/compat.keep_loopback): set it before any test module imports ray, or a
# driver in a test process (tests/test_ray_engine.py's module fixture) is sent to this machine's
# outward address and waits for the cluster forever. .ci/run exports it; the README's bare
# `pytest -n 2` must not depend on that.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited GIT_* and a throwaway global config, so tests see only their own repos."""
    for key in list(os.environ):
        if key.startswith("GIT_") or key.startswith("FLEET_"):
            monkeypatch.delenv(key)
    cfg = tmp_path_factory.mktemp("gitcfg") / "config"
    cfg.write_text("[user]\n\tname = fleet tests\n\temail = tests@fleet.invalid\n"
                   "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo on branch main with one commit."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# test repo\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial commit")
    return path


def write_fleet(repo: Path, body: str, name: str = "fleet.yaml") -> Path:
    path = repo / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def fleet(*args: str, cwd: Path, check: bool = False, timeout: float = 120,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"fleet {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def fleet_in_process(*args: str, cwd: Path, check: bool = False, env: dict[str, str] | None = None,
                     timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI, run in this process by click's test runner rather than in a new interpreter
    (`fleet` above): the same entry point, arguments, working directory, environment and exit
    code, without the second or so of interpreter start and imports per call that dominates a
    test calling fleet a dozen times. Sessions (double-forked hosts), gates, git and gh stay real
    processes. Keep `fleet` for what must be its own process: kill -9, signals, a server.
    (`timeout` is accepted for the same calls; nothing here hangs on a pipe.)"""
    import contextlib
    import traceback

    from click.testing import CliRunner

    from reconciler.cli.main import cli
    from reconciler.spec import limits

    overrides = dict(limits._overrides)  # --max-file-size, --allow-outside-repo: one run's, as in a process
    try:
        with contextlib.chdir(cwd):
            result = CliRunner().invoke(cli, list(args), prog_name="fleet", env={"COLUMNS": "200", **(env or {})})
    finally:
        limits._overrides.clear()
        limits._overrides.update(overrides)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    proc = subprocess.CompletedProcess(["fleet", *args], result.exit_code, result.stdout, stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"fleet {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    yield h


def branch_marks(repo: Path, fleet: str = "t") -> dict[str, bool]:
    """branch -> protect, from the fleet's marks file (store/branch_marks.py); {} when it has none."""
    path = repo / ".git" / "fleet" / "branches" / f"{fleet}.json"
    if not path.exists():
        return {}
    return {b: m["protect"] for b, m in json.loads(path.read_text())["branches"].items()}


def session_pids(repo: Path) -> list[int]:
    """Live session leaders fleet started for `repo` (by their FLEET_REPO owner variable)."""
    return _session_leaders(lambda r: r == str((repo / ".git").resolve()))


def _session_leaders(match) -> list[int]:  # type: ignore[no-untyped-def]
    pids = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) != proc.pid or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if match(environ_of(proc.pid).get("FLEET_REPO", "")):
                pids.append(proc.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return pids


def environ_of(pid: int, within: float = 1) -> dict[str, str]:
    """The environment of process `pid`; {} once it has ended (gone, or a zombie). A process in
    its exit reads as an empty environment for a moment before it is a zombie (its memory is
    gone first): that moment is waited out, or a session about to end would already count as
    ended while fleet, looking next, still sees it running."""
    deadline = time.monotonic() + within
    while True:
        try:
            proc = psutil.Process(pid)
            env = proc.environ()
            if env or proc.status() == psutil.STATUS_ZOMBIE or time.monotonic() > deadline:
                return env if proc.status() != psutil.STATUS_ZOMBIE else {}
        except psutil.NoSuchProcess:
            return {}
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def reap_sessions(tmp_path: Path) -> Iterator[None]:
    """Kill what this test's fleets left running (and only that: tests run in parallel)."""
    yield
    for pid in _session_leaders(lambda r: r.startswith(str(tmp_path.resolve()) + os.sep)):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_of(stat_line: str) -> str:
    """The start time (field 22) of a /proc/PID/stat line: with the pid, what names one process."""
    return stat_line.rpartition(")")[2].split()[19]


def still_running(pid: int, start: str) -> bool:
    """Is the process that had `pid` and start time `start` (`start_of`) running, not a zombie?
    The pid alone is not enough: pids come round fast while the suite runs (pid_max 32768)."""
    try:
        now = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return start_of(now) == start and now.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pid: int, start: str, within: float = 10) -> None:
    """Wait until the process `pid`/`start` has ended (gone or a zombie); AssertionError after
    `within` seconds. A kill is not instant: a process whose pipes have closed can still be in
    its exit (state R) for a moment on a loaded machine, so one look right after a kill races
    the kernel."""
    wait_until(lambda: not still_running(pid, start), timeout=within, interval=0.02)


def ended(pid: int) -> bool:
    """The process has ended: gone, or a zombie its parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def live_agents(repo: Path) -> list[str]:
    """The agents (FLEET_AGENT) of `repo`'s live sessions, sorted: a psutil read, not a pass of `status`."""
    names = []
    for pid in session_pids(repo):
        try:
            names.append(environ_of(pid).get("FLEET_AGENT", ""))
        except psutil.Error:
            continue
    return sorted(names)


def wait_ended(repo: Path, timeout: float = 60) -> None:
    """Every session of `repo` has ended (its host wrote the exit record before it exited): what
    polling `status` until each is Succeeded or Failed waits for, without a pass per poll."""
    wait_until(lambda: not session_pids(repo), timeout=timeout, interval=0.05)


def wait_until(check, timeout: float = 60, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")


def status(repo: Path, file: str = "fleet.yaml") -> dict[str, dict]:
    proc = fleet("status", file, "-o", "json", cwd=repo, check=True)
    return {a["agent"]: a for a in json.loads(proc.stdout)["agents"]}


def status_in_process(repo: Path, file: str = "fleet.yaml") -> dict[str, dict]:
    """`status`, through fleet_in_process."""
    proc = fleet_in_process("status", file, "-o", "json", cwd=repo, check=True)
    return {a["agent"]: a for a in json.loads(proc.stdout)["agents"]}


def next_tick(where: Path) -> None:
    """Return once the filesystem's clock has moved past every write made before the call."""
    probe = where / ".tick"
    probe.write_text("")
    first = os.stat(probe).st_mtime_ns
    while os.stat(probe).st_mtime_ns == first:
        os.utime(probe)
