"""Gates run by the reconciler, feedback by resume, backoff, and the daily budget."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import agents
from conftest import fleet_in_process, live_agents, session_pids, status_in_process, wait_ended, wait_until


def gated_fleet(repo: Path, *, agent_args: list[str], gate: str, max_attempts: int = 3) -> Path:
    script = agents.install(repo.parent)
    return agents.fleet_yaml(repo, f"""
        - name: solver
          tier: local
          command: {agents.argv(script, *agent_args)}
          gates: [answer]
    """, spec=f"""
        gates:
          answer: {{run: {json.dumps(gate)}, timeout: 30s, maxAttempts: {max_attempts}}}
    """)


def apply_until(repo: Path, done, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Apply until `done(status rows)`; the next pass once a session ended (what it waits for), not on a timer."""
    deadline = time.monotonic() + timeout

    def step():  # type: ignore[no-untyped-def]
        fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
        rows = status_in_process(repo)
        if done(rows):
            return rows
        if (running := len(session_pids(repo))):
            wait_until(lambda: len(session_pids(repo)) < running, timeout=max(deadline - time.monotonic(), 0.1),
                       interval=0.05)
        return None

    return wait_until(step, timeout=timeout, interval=0.3)


def test_gate_failing_once_resumes_the_session_with_its_output_then_succeeds(repo: Path) -> None:
    gated_fleet(repo, agent_args=["gatefix", str(repo.parent)],
                gate="grep -q good answer.txt || { echo 'expected good, got:'; cat answer.txt; exit 1; }")
    rows = apply_until(repo, lambda r: r["solver"]["phase"] in ("Succeeded", "Failed"))
    row = rows["solver"]
    assert row["phase"] == "Succeeded" and row["attempts"] == 2  # resumed exactly once
    conditions = {c["type"]: c for c in row["conditions"]}
    assert conditions["GatesPassed"]["status"] == "True"
    message = (repo.parent / "solver.message").read_text()
    assert message.count("---") == 1 and "expected good, got:" in message and "bad" in message
    log = fleet_in_process("logs", "fleet.yaml", "solver", "--raw", cwd=repo).stdout
    assert "--- fleet gate answer" in log and "FAILED" in log and "passed" in log


def test_gate_that_never_passes_ends_failed_after_max_attempts(repo: Path) -> None:
    gated_fleet(repo, agent_args=["gatefix", str(repo.parent), "fix-never"],
                gate="echo 'tests: 3 failed'; exit 1", max_attempts=2)
    rows = apply_until(repo, lambda r: r["solver"]["phase"] == "Failed"
                       and "2/2" in (r["solver"]["reason"] or ""))
    row = rows["solver"]
    assert "gate answer failed 2/2 times" in row["reason"] and "tests: 3 failed" in row["reason"]
    assert row["attempts"] == 2
    assert fleet_in_process("diff", "fleet.yaml", cwd=repo).returncode == 0  # no restart loop after exhausting gates
    assert "tests: 3 failed" in fleet_in_process("status", "fleet.yaml", cwd=repo).stdout


def test_gates_are_not_run_by_diff(repo: Path) -> None:
    canary = repo.parent / "gate-ran"
    gated_fleet(repo, agent_args=["gatefix", str(repo.parent)], gate=f"touch {canary}")
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    assert "run-gate" in status_in_process(repo)["solver"]["reason"]
    diff = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [a["kind"] for a in diff["actions"]] == ["run-gate"]
    assert not canary.exists()
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert canary.exists() and status_in_process(repo)["solver"]["phase"] == "Succeeded"


def test_gated_session_that_ended_frees_its_slot_in_the_same_pass(repo: Path) -> None:
    """Issue 15 item 2: with maxRunning 1, a1 exited 0 and waits for its gate; a2 spawns in the
    pass that runs the gate, not one pass later (an ended session holds no slot)."""
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: a1
          tier: local
          command: {agents.argv(script, "sleep", "0")}
          gates: [ok]
        - name: a2
          tier: local
          command: {agents.argv(script, "sleep", "60")}
    """, spec="""
        concurrency: {maxRunning: 1}
        gates:
          ok: {run: "true", timeout: 30s}
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert status_in_process(repo)["a2"]["phase"] == "Pending"  # a1 took the one slot
    wait_ended(repo)  # a1 exited; its gate waits
    assert "run-gate" in status_in_process(repo)["a1"]["reason"]
    diff = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [(a["kind"], a["agent"]) for a in diff["actions"]] == [("run-gate", "a1"), ("spawn", "a2")]
    assert diff["actions"][0]["details"]["resume"] is False  # the one slot is a2's now
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    rows = status_in_process(repo)
    assert rows["a1"]["phase"] == "Succeeded"
    assert rows["a2"]["phase"] == "Running" and rows["a2"]["pid"] is not None


def test_crashing_agent_backs_off_with_doubling_delays_up_to_max(repo: Path) -> None:
    """Each failure in a row doubles the delay before the next start, up to `max`; no start
    is planned before the deadline, one right after it. Passes of `fleet reconcile --once`
    at chosen moments of an injected clock (FLEET_CLOCK_OFFSET), never sleeps."""
    script = agents.install(repo.parent)
    starts = repo.parent / "starts"
    agents.fleet_yaml(repo, f"""
        - name: crasher
          tier: local
          command: {agents.argv(script, "crashlog", str(starts))}
    """, spec="""
        restartBackoff: {initial: 10m, max: 20m}
    """)

    def at(seconds: float) -> dict[str, str]:
        return {"FLEET_CLOCK_OFFSET": str(seconds)}

    def plan(seconds: float) -> list[tuple[str, str | None]]:
        out = fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo, env=at(seconds)).stdout
        return [(a["kind"], a["details"].get("backoffUntil")) for a in json.loads(out)["actions"]]

    offset, delays = 0.0, []
    for run in range(1, 4):
        fleet_in_process("reconcile", "fleet.yaml", "--once", cwd=repo, check=True, env=at(offset))  # starts run `run`
        wait_until(lambda n=run: starts.exists() and len(starts.read_text().split()) == n and not session_pids(repo))
        [(kind, until)] = plan(offset)  # the failure, folded in: the backoff's deadline
        row = status_in_process(repo)["crasher"]
        assert (kind, row["phase"], row["exit_code"]) == ("wait", "Failed", 3)
        assert [c["status"] for c in row["conditions"] if c["type"] == "CrashLoopBackOff"] == ["True"]
        deadline = datetime.fromisoformat(until)
        delays.append((deadline - datetime.fromisoformat(row["finished_at"])).total_seconds())
        # a minute before the deadline (however long a pass takes to start), then just after it
        due = (deadline - datetime.now(timezone.utc)).total_seconds()
        assert [k for k, _ in plan(due - 60)] == ["wait"]
        assert [k for k, _ in plan(due + 1)] == ["resume"]
        offset = due + 1
    assert delays == [600, 1200, 1200]
    assert len(starts.read_text().split()) == 3  # one start per pass that was due, none between


def test_budget_lets_two_spawn_and_holds_the_third(repo: Path) -> None:
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: w-{{item}}
          forEach: {{items: [a, b, c]}}
          tier: local
          command: {agents.argv(script, "cost", "0.60")}
    """, spec="""
        concurrency: {maxRunning: 1}
        budget: {usdPerDay: 1}
    """)
    rows = apply_until(repo, lambda r: r["w-c"]["reason"] and "budget" in r["w-c"]["reason"]
                       and r["w-b"]["phase"] == "Succeeded")
    assert [rows[n]["phase"] for n in ("w-a", "w-b", "w-c")] == ["Succeeded", "Succeeded", "Pending"]
    assert "budget.usdPerDay $1.00 reached ($1.20 spent today)" in rows["w-c"]["reason"]
    assert rows["w-c"]["pid"] is None
    assert any(c["type"] == "BudgetExhausted" for c in rows["w-c"]["conditions"])
    report = json.loads(fleet_in_process("status", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert report["spendTodayUsd"] == 1.2 and report["budgetUsdPerDay"] == 1
    assert "spend today: $1.20 of $1.00 budget" in fleet_in_process("status", "fleet.yaml", cwd=repo).stdout


def test_budget_with_on_exhausted_continue_does_not_touch_running_sessions(repo: Path) -> None:
    # the default, pause, interrupts running sessions (tests/test_spend_e2e.py); continue leaves them
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: spender
          tier: local
          command: {agents.argv(script, "cost", "2.0")}
        - name: sleeper
          tier: local
          command: {agents.argv(script, "sleep", "300")}
    """, spec="""
        budget: {usdPerDay: 1, onExhausted: continue}
    """)
    rows = apply_until(repo, lambda r: r["spender"]["phase"] == "Succeeded")
    assert rows["sleeper"]["phase"] == "Running"
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert status_in_process(repo)["sleeper"]["pid"] == rows["sleeper"]["pid"]


def test_watch_applies_an_edit_at_the_next_tick_and_stops_on_sigterm(repo: Path) -> None:
    script = agents.install(repo.parent)
    path = agents.fleet_yaml(repo, f"""
        - name: first
          tier: local
          command: {agents.argv(script, "sleep", "60")}
    """, spec="""
        reconcile: {interval: 1s}
    """)
    # the loop is its own process: it runs on a timer and stops on SIGTERM
    loop = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "reconcile", "fleet.yaml", "--watch"],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: live_agents(repo) == ["first"])
        assert status_in_process(repo)["first"]["phase"] == "Running"
        path.write_text(path.read_text() + f"""    - name: second
      tier: local
      command: {agents.argv(script, "sleep", "60")}
""")
        wait_until(lambda: live_agents(repo) == ["first", "second"])  # the next tick read the edit
        # and the view the loop publishes (what status shows while it runs) has it
        wait_until(lambda: status_in_process(repo).get("second", {}).get("phase") == "Running", interval=0.5)
        pids = [status_in_process(repo)[n]["pid"] for n in ("first", "second")]
    finally:
        loop.send_signal(signal.SIGTERM)
    # no timing bound (the loop may finish a running tick first, longer on a loaded machine):
    # the 30 s is a hang detector; what is checked is that it stops cleanly and leaves the sessions
    out, _ = loop.communicate(timeout=30)
    assert loop.returncode == 0 and "SIGTERM" in out
    assert [status_in_process(repo)[n]["pid"] for n in ("first", "second")] == pids  # sessions still alive


def test_once_runs_a_single_pass(repo: Path) -> None:
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: only
          tier: local
          command: {agents.argv(script, "sleep", "60")}
    """)
    proc = fleet_in_process("reconcile", "fleet.yaml", "--once", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert status_in_process(repo)["only"]["phase"] == "Running"
    assert "in sync" in fleet_in_process("reconcile", "fleet.yaml", "--once", cwd=repo).stdout
