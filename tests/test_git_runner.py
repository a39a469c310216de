"""observe/gittree.py: the bounded runner's one watchdog thread, and the pass's one git environment."""
from __future__ import annotations

import multiprocessing
import sys
import threading
from pathlib import Path

import pytest
from conftest import git, start_of, wait_gone

from reconciler.observe import gittree
from reconciler.observe.gittree import GitTimeout, git_env, read_env, run_bounded, run_git


def test_a_call_past_its_time_is_killed_with_what_it_started(tmp_path: Path) -> None:
    pidfile, statfile = tmp_path / "child", tmp_path / "child.stat"
    # the shell starts a child that would hold the pipes open for 60 s: the whole group goes.
    # Its /proc stat line is kept too: pids come round fast (pid_max 32768 here) while the
    # suite runs, so the pid alone might name another process by the time it is looked at.
    script = f"sleep 60 & cat /proc/$!/stat > {statfile}; echo $! > {pidfile}; wait"
    with pytest.raises(GitTimeout, match="did not finish within 0.3s"):
        run_bounded(["sh", "-c", script], cwd=tmp_path, env=None, timeout=0.3)
    child = int(pidfile.read_text())
    wait_gone(child, start_of(statfile.read_text()))


def test_an_earlier_deadline_wakes_the_watchdog_waiting_for_a_later_one(tmp_path: Path) -> None:
    """The watchdog sleeps until the earliest deadline: a call with a short timeout, started
    while it waits for a long one, must still be killed at its own time; the long one, which
    ends by itself, is not killed."""
    done: dict[str, int] = {}
    started = threading.Event()

    def long_call() -> None:
        started.set()
        done["rc"] = run_bounded(["sh", "-c", "sleep 2; exit 7"], cwd=tmp_path, env=None, timeout=600).returncode

    thread = threading.Thread(target=long_call)
    thread.start()
    started.wait()
    with pytest.raises(GitTimeout):
        run_bounded(["sleep", "60"], cwd=tmp_path, env=None, timeout=0.3)
    thread.join()
    assert done["rc"] == 7  # ran to its own end: exit 7, not -9


def test_finished_calls_do_not_pile_up_in_the_watchdog(tmp_path: Path) -> None:
    """A loop runs thousands of bounded calls a tick, each with a deadline minutes away: the
    cancelled ones are dropped, not kept for a whole timeout."""
    for _ in range(300):
        assert run_bounded(["true"], cwd=tmp_path, env=None, timeout=600).returncode == 0
    assert len(gittree._WATCHDOG._heap) <= 65


def _timed_out_in_child(cwd: str) -> None:
    try:
        run_bounded(["sleep", "60"], cwd=cwd, env=None, timeout=0.3)
    except GitTimeout:
        sys.exit(7)
    sys.exit(1)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_gets_a_watchdog_of_its_own(tmp_path: Path) -> None:
    run_bounded(["true"], cwd=tmp_path, env=None, timeout=600)  # the parent's thread runs
    child = multiprocessing.get_context("fork").Process(target=_timed_out_in_child, args=(str(tmp_path),))
    child.start()
    child.join(120)
    assert child.exitcode == 7


def test_the_pass_environment_is_git_env_read_only_and_immutable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.worktree=/elsewhere'")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    monkeypatch.setenv("FLEET_TEST_KEPT", "yes")
    env = read_env()
    assert dict(env) == {**git_env(), "GIT_OPTIONAL_LOCKS": "0"}
    assert "GIT_CONFIG_PARAMETERS" not in env and "GIT_DIR" not in env
    assert env["FLEET_TEST_KEPT"] == "yes" and env["GIT_TERMINAL_PROMPT"] == "0"
    with pytest.raises(TypeError):
        env["GIT_DIR"] = "/elsewhere"  # type: ignore[index]


def test_git_sees_the_same_environment_from_the_pass_env_as_without_it(repo: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What git runs with: `read_env()` handed in, or nothing (each call builds its own)."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.excludesFile")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "/elsewhere")
    monkeypatch.setenv("GIT_OPTIONAL_LOCKS", "1")
    git(repo, "config", "alias.envdump", "!env")

    def seen(**kw: object) -> dict[str, str]:
        out = run_git(repo, "envdump", **kw).stdout  # type: ignore[arg-type]
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("_="))

    with_pass, alone = seen(env=read_env()), seen()
    assert with_pass == alone
    assert with_pass["GIT_OPTIONAL_LOCKS"] == "0" and with_pass["GIT_TERMINAL_PROMPT"] == "0"
    assert not any(k.startswith("GIT_CONFIG_KEY_") or k == "GIT_CONFIG_COUNT" for k in with_pass)
