"""fleet apply with real worktrees and real detached processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import agents
import psutil
from conftest import (
    FLEETS,
    ROOT,
    ended,
    fleet,
    fleet_in_process,
    git,
    session_pids,
    status_in_process,
    wait_ended,
    wait_until,
    write_fleet,
)


def fleet_yaml(repo: Path, *, agent_args: list[str], count: int = 3, max_running: int | None = None,
               restart: str = "OnFailure", name: str = "t", extra_agent: str = "") -> Path:
    script = agents.install(repo.parent)
    caps = f"{{maxRunning: {max_running}}}" if max_running else "{}"
    items = ", ".join(f"a{i:02d}" for i in range(count))
    return write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: {name}}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          concurrency: {caps}
          agents:
            - name: w-{{item}}
              forEach: {{items: [{items}]}}
              tier: local
              prompt: work on {{item}}
              command: {agents.argv(script, *agent_args)}
              restart: {restart}
        {extra_agent}
    """)




def test_apply_creates_worktrees_and_detached_sessions_that_outlive_the_cli(repo: Path) -> None:
    fleet_yaml(repo, agent_args=["sleep", "30"])
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)  # its own process: the sessions must outlive it
    assert proc.returncode == 0, proc.stderr + proc.stdout
    worktrees = git(repo, "worktree", "list", "--porcelain")
    for i in range(3):
        assert f"branch refs/heads/fleet/t/w-a{i:02d}" in worktrees
        assert (repo / ".fleet" / "worktrees" / f"w-a{i:02d}").is_dir()
    rows = status_in_process(repo)
    assert [r["phase"] for r in rows.values()] == ["Running"] * 3
    for row in rows.values():
        proc_ = psutil.Process(row["pid"])  # the CLI has exited; the session is alive
        assert proc_.is_running() and os.getsid(row["pid"]) == row["pid"]  # own session
        assert proc_.cwd() == row["worktree"]
        env = proc_.environ()
        assert env["FLEET_NAME"] == "t" and env["FLEET_AGENT"] == row["agent"] and env["FLEET_SPEC_HASH"]
    assert git(repo, "status", "--porcelain") == "?? fleet.yaml\n"  # .fleet/ is excluded, nothing else touched
    # converged: the second apply and diff see nothing to do
    assert fleet_in_process("diff", "fleet.yaml", cwd=repo).returncode == 0
    again = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert again.returncode == 0 and "No changes" in again.stdout
    assert sorted(r["pid"] for r in status_in_process(repo).values()) == sorted(r["pid"] for r in rows.values())


def test_finished_sessions_are_recorded_and_not_respawned(repo: Path) -> None:
    fleet_yaml(repo, agent_args=["commit"], count=2)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    rows = status_in_process(repo)
    assert [r["phase"] for r in rows.values()] == ["Succeeded"] * 2
    for row in rows.values():
        assert row["exit_code"] == 0 and row["ahead"] == 1 and row["dirty"] == 0
        log = git(repo, "log", "--format=%s", f"fleet/t/{row['agent']}")
        assert f"{row['agent']} did its work" in log
    assert fleet_in_process("diff", "fleet.yaml", cwd=repo).returncode == 0
    assert "No changes" in fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo).stdout


def test_killed_session_is_restarted_under_on_failure_after_backoff(repo: Path) -> None:
    path = fleet_yaml(repo, agent_args=["sleep", "60"], count=1)
    path.write_text(path.read_text().replace("  agents:\n", "  restartBackoff: {initial: 10m}\n  agents:\n"))
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    first = status_in_process(repo)["w-a00"]["pid"]
    os.killpg(first, signal.SIGKILL)
    wait_until(lambda: ended(first))
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # notices the loss, starts the backoff
    row = status_in_process(repo)["w-a00"]
    assert (row["phase"], row["exit_code"]) == ("Failed", None)
    assert row["reason"].startswith("session ended without an exit status (killed?); CrashLoopBackOff: 1 failure(s)")
    assert [c["status"] for c in row["conditions"] if c["type"] == "CrashLoopBackOff"] == ["True"]
    # an injected clock (FLEET_CLOCK_OFFSET), never a sleep: 10 minutes cannot have passed, then they have
    diff = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [(a["kind"], a["details"].get("then")) for a in diff["actions"]] == [("wait", "resume")]
    later = {"FLEET_CLOCK_OFFSET": "601"}
    diff = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo, env=later).stdout)
    assert [(a["kind"], a["agent"]) for a in diff["actions"]] == [("resume", "w-a00")]
    assert "restart: OnFailure" in diff["actions"][0]["reason"]
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True, env=later)
    row = status_in_process(repo)["w-a00"]
    assert row["phase"] == "Running" and row["pid"] != first and row["attempts"] == 2
    assert "FLEET_RESUME" in psutil.Process(row["pid"]).environ()


def test_backoff_wait_is_rounded_up_never_next_restart_in_0s(repo: Path) -> None:
    from datetime import datetime, timedelta

    from reconciler.observe.snapshot import observe
    from reconciler.plan.planner import plan
    from reconciler.spec.loader import load_fleet

    path = fleet_yaml(repo, agent_args=["crash", "3"], count=1)
    path.write_text(path.read_text().replace("  agents:\n", "  restartBackoff: {initial: 10m}\n  agents:\n"))
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    assert status_in_process(repo)["w-a00"]["phase"] == "Failed"
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # records the failure, starts the backoff
    loaded = load_fleet(path)
    observed = observe(loaded)
    record = observed.agents["w-a00"].record
    assert record is not None and record.backoff_until
    until = datetime.fromisoformat(record.backoff_until)
    for left, shown in [(0.3, "1s"), (1.0, "1s"), (1.2, "2s"), (599.5, "600s")]:  # an injected clock
        reasons = [a.reason for a in plan(loaded, observed, now=until - timedelta(seconds=left)).actions]
        assert reasons == [f"CrashLoopBackOff: 1 failure(s) in a row; next restart in {shown}"]


def test_failed_session_stays_failed_under_restart_never(repo: Path) -> None:
    fleet_yaml(repo, agent_args=["crash", "7"], count=1, restart="Never")
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    row = status_in_process(repo)["w-a00"]
    assert row["phase"] == "Failed" and row["exit_code"] == 7 and "exited 7" in row["reason"]
    assert fleet_in_process("diff", "fleet.yaml", cwd=repo).returncode == 0
    assert "crashing" in fleet_in_process("logs", "fleet.yaml", "w-a00", cwd=repo).stdout


def test_spec_change_replaces_the_running_session(repo: Path) -> None:
    path = fleet_yaml(repo, agent_args=["sleep", "60"], count=1)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    old = status_in_process(repo)["w-a00"]["pid"]
    path.write_text(path.read_text().replace("prompt: work on {item}", "prompt: work harder on {item}"))
    diff = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [(a["kind"], a["details"].get("changes")) for a in diff["actions"]] == [
        ("replace", ["prompt: 'work on a00' -> 'work harder on a00'"])]
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    row = status_in_process(repo)["w-a00"]
    assert row["phase"] == "Running" and row["pid"] != old and row["sync"] == "Synced"
    assert ended(old)


def test_caps_hold_with_20_agents_and_max_running_3(repo: Path) -> None:
    fleet_yaml(repo, agent_args=["commit", "0.4"], count=20, max_running=3)
    most = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(session_pids(repo)))
            time.sleep(0.05)  # a session over the cap would live its 0.4 s and more: seen at this rate

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(200):
            fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
            rows = status_in_process(repo)
            if all(r["phase"] == "Succeeded" for r in rows.values()):
                break
            assert sum(r["phase"] == "Running" for r in rows.values()) <= 3
            pending = [r for r in rows.values() if r["phase"] == "Pending" and r["reason"]]
            assert all("maxRunning=3" in r["reason"] for r in pending if "waits" in r["reason"])
            if (running := len(session_pids(repo))):  # the next pass once one of them ended, not sooner
                wait_until(lambda n=running: len(session_pids(repo)) < n, interval=0.05)
    finally:
        done.set()
        sampler.join()
    assert all(r["phase"] == "Succeeded" for r in status_in_process(repo).values())
    assert 1 <= most <= 3


def test_concurrent_applies_do_not_double_spawn(repo: Path) -> None:
    fleet_yaml(repo, agent_args=["sleep", "30"], count=4)
    cmd = [sys.executable, "-m", "reconciler.cli.main", "apply", "fleet.yaml", "--yes"]
    procs = [subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len(session_pids(repo)) == 4
    assert len({r["pid"] for r in status_in_process(repo).values()}) == 4


def test_lock_timeout_fails_with_holder_info(repo: Path) -> None:
    from filelock import FileLock

    fleet_yaml(repo, agent_args=["sleep", "1"], count=1)
    home = repo / ".git" / "fleet"  # the fleet lock lives in the git common dir
    home.mkdir()
    (home / "t.lock.json").write_text(json.dumps({"id": "abc123", "pid": 1, "host": "h",
                                                  "since": "then", "command": "fleet apply"}))
    with FileLock(str(home / "t.lock")):
        proc = fleet("apply", "fleet.yaml", "--yes", "--lock-timeout", "0.5", cwd=repo)  # another process's lock
    assert proc.returncode == 1
    assert "locked by fleet apply (pid 1" in proc.stderr and "abc123" in proc.stderr


def test_a_lock_held_by_an_older_fleet_under_dot_fleet_still_holds(repo: Path) -> None:
    """Migration renames the lock file, so its OS lock (held by the older fleet) moves with it."""
    from filelock import FileLock

    fleet_yaml(repo, agent_args=["sleep", "1"], count=1)
    (repo / ".fleet").mkdir()
    (repo / ".fleet" / "t.lock.json").write_text(json.dumps({"id": "abc123", "pid": 1, "host": "h",
                                                               "since": "then", "command": "fleet apply"}))
    with FileLock(str(repo / ".fleet" / "t.lock")):
        proc = fleet("apply", "fleet.yaml", "--yes", "--lock-timeout", "0.5", cwd=repo)  # another process's lock
    assert proc.returncode == 1
    assert "locked by fleet apply (pid 1" in proc.stderr and "abc123" in proc.stderr
    assert not (repo / ".fleet").exists() and (repo / ".git" / "fleet" / "t.lock").exists()


def test_apply_without_yes_and_without_terminal_refuses(repo: Path) -> None:
    fleet_yaml(repo, agent_args=["sleep", "1"], count=1)
    proc = fleet("apply", "fleet.yaml", cwd=repo)  # its own process: what its stdin is, is the point
    assert proc.returncode == 1 and "--yes" in proc.stderr
    assert "worktree" not in git(repo, "worktree", "list").split("\n", 1)[1]


def test_undeclared_clean_agent_is_pruned_and_dirty_one_blocked(repo: Path) -> None:
    path = fleet_yaml(repo, agent_args=["commit"], count=2)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    assert [r["phase"] for r in status_in_process(repo).values()] == ["Succeeded"] * 2
    git(repo, "merge", "-q", "fleet/t/w-a00")  # a00's work is merged: safe to prune
    (repo / ".fleet" / "worktrees" / "w-a01" / "scratch.txt").write_text("uncommitted")
    path.write_text(path.read_text().replace("[a00, a01]", "[a02]"))
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "prune refused" in proc.stdout and "scratch.txt" in proc.stdout and "w-a01 did its work" in proc.stdout
    assert not (repo / ".fleet" / "worktrees" / "w-a00").exists()
    assert "fleet/t/w-a00" not in git(repo, "branch", "--list")
    assert (repo / ".fleet" / "worktrees" / "w-a01" / "scratch.txt").read_text() == "uncommitted"
    assert "fleet/t/w-a01" in git(repo, "branch", "--list")


def test_demo_fleet_runs_and_all_three_succeed_with_commits(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    env = {"PYTHONPATH": str(ROOT), "DEMO_DELAY": "0.05"}
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True, env=env)

    def converged() -> bool:
        fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True, env=env)
        return all(r["phase"] == "Succeeded" for r in status_in_process(repo).values())

    wait_until(converged, timeout=60, interval=0.5)
    for name in ("notes-parser", "notes-storage", "notes-api"):
        assert status_in_process(repo)[name]["ahead"] == 1
        assert f"{name}: notes on the task" in git(repo, "log", "--format=%s", f"fleet/demo/{name}")
