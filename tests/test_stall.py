"""No hung session holds a slot forever: stallAfter and timeout, with real processes."""
from __future__ import annotations

import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import agents
from conftest import fleet_in_process, live_agents, status_in_process, wait_ended, wait_until, write_fleet


def fleet_of(repo: Path, agents_yaml: str, *, max_running: int = 4) -> Path:
    header = "\n".join(["apiVersion: fleet/v1alpha1", "kind: Fleet", "metadata: {name: t}", "spec:",
                        "  tiers: {local: {runtime: command, stallAfter: 2s}}",
                        f"  concurrency: {{maxRunning: {max_running}}}",
                        "  restartBackoff: {initial: 1h}", "  agents:"])
    return write_fleet(repo, header + "\n" + agents_yaml)


def agent(name: str, script: Path, *args: str, extra: str = "") -> str:
    return f"    - name: {name}\n      tier: local\n      command: {agents.argv(script, *args)}\n{extra}"


def watch(repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "reconcile", "fleet.yaml", "--watch",
                             "--interval", "0.5"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stop(loop: subprocess.Popen[str]) -> str:
    loop.send_signal(signal.SIGTERM)
    return loop.communicate(timeout=30)[0]


def test_silent_session_is_stopped_as_stalled_and_its_slot_goes_to_a_pending_agent(repo: Path) -> None:
    script = agents.install(repo.parent)
    fleet_of(repo, agent("hung", script, "silent", "300")
             + agent("next", script, "sleep", "300", extra="      stallAfter: 1h\n"), max_running=1)
    loop = watch(repo)
    try:
        wait_until(lambda: live_agents(repo) == ["next"], timeout=60)  # hung was stopped, next has its slot
        rows = status_in_process(repo)
        assert rows["next"]["phase"] == "Running"
    finally:
        out = stop(loop)
    hung = rows["hung"]
    assert hung["phase"] == "Failed", out
    assert hung["reason"].startswith("Stalled: no progress") and "calling the model" in hung["reason"]
    assert "CrashLoopBackOff" in hung["reason"]  # restarted per policy, after its backoff
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in hung["conditions"])
    ran = (datetime.fromisoformat(hung["finished_at"]) - datetime.fromisoformat(hung["started_at"])).total_seconds()
    assert ran >= 2  # never before its stallAfter
    worktree = Path(hung["worktree"])
    assert (worktree / "work-in-progress.txt").read_text() == "half done\n"  # the work is kept
    described = fleet_in_process("describe", "fleet.yaml", "hung", cwd=repo).stdout
    assert "Stalled" in described and "calling the model" in described


def test_a_session_that_keeps_writing_output_is_not_stopped(repo: Path) -> None:
    script = agents.install(repo.parent)
    fleet_of(repo, agent("busy", script, "chatty", "5"))
    loop = watch(repo)
    try:
        wait_until(lambda: live_agents(repo) == ["busy"], timeout=60)  # the loop's first tick started it
        wait_ended(repo)
        rows = status_in_process(repo)
    finally:
        stop(loop)
    assert rows["busy"]["phase"] == "Succeeded" and rows["busy"]["exit_code"] == 0


def test_timeout_stops_a_busy_session(repo: Path) -> None:
    script = agents.install(repo.parent)
    fleet_of(repo, agent("long", script, "chatty", "300", extra="      timeout: 2s\n"))
    loop = watch(repo)
    try:
        wait_until(lambda: live_agents(repo) == ["long"], timeout=60)  # the loop's first tick started it
        wait_ended(repo)  # the loop stopped it; its record of why is written just after the process ends
        # a status read before the loop records why shows the run as ended with no reason yet: poll
        wait_until(lambda: str(status_in_process(repo)["long"]["reason"]).startswith("DeadlineExceeded"),
                   interval=0.5)
        rows = status_in_process(repo)
        assert rows["long"]["phase"] == "Failed"
    finally:
        stop(loop)
    row = rows["long"]
    assert row["reason"].startswith("DeadlineExceeded") and "working at" in row["reason"]
    assert any(c["type"] == "DeadlineExceeded" for c in row["conditions"])


def test_status_shows_time_since_last_progress(repo: Path) -> None:
    script = agents.install(repo.parent)
    fleet_of(repo, agent("quiet", script, "silent", "300", extra="      stallAfter: 1h\n"))
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    row = wait_until(lambda: (r := status_in_process(repo)["quiet"])["idle_seconds"] is not None and r, interval=0.5)
    assert row["phase"] == "Running" and row["idle_seconds"] >= 0
    assert "IDLE" in fleet_in_process("status", "fleet.yaml", cwd=repo).stdout
