"""Saved plans: `fleet diff --out` then `fleet apply PLANFILE` applies exactly that plan, and a
stale plan (spec changed, observed state moved) is refused with the reason."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import agents
from conftest import fleet_in_process, git, status_in_process, wait_ended, write_fleet


def _fleet(repo: Path, *, first: list[str], second: list[str] | None = None, prompt: str = "work") -> Path:
    script = agents.install(repo.parent)
    # a failed session waits an hour to restart: the plans below must not go stale because a
    # backoff ran out between two commands on a slow machine
    lines = ["apiVersion: fleet/v1alpha1", "kind: Fleet", "metadata: {name: t}", "spec:",
             "  restartBackoff: {initial: 1h, max: 2h}",
             "  tiers: {local: {runtime: command}}", "  agents:",
             "    - name: a", "      tier: local", f"      prompt: {prompt}",
             f"      command: {agents.argv(script, *first)}"]
    if second is not None:
        lines += ["    - name: b", "      tier: local", f"      command: {agents.argv(script, *second)}"]
    return write_fleet(repo, "\n".join(lines) + "\n")


def test_a_fresh_saved_plan_applies_exactly_its_actions(repo: Path) -> None:
    _fleet(repo, first=["sleep", "300"], second=["sleep", "300"])
    made = fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    assert made.returncode == 1, made.stderr  # changes, as `fleet diff`
    assert "Saved the plan to plan.json" in made.stderr
    assert "+ create-worktree" in made.stdout  # the table is still shown
    saved = json.loads((repo / "plan.json").read_text())
    assert saved["kind"] == "SavedPlan" and saved["fleet"] == "t"
    assert saved["source"]["file"] == str((repo / "fleet.yaml").resolve())
    assert len(saved["source"]["sha256"]) == 64 and len(saved["source"]["desiredSha256"]) == 64
    assert saved["observed"]["state"]["agents"] == {}  # nothing observed yet
    planned = [(a["kind"], a["agent"]) for a in saved["plan"]["actions"]]
    assert planned == [("create-worktree", "a"), ("spawn", "a"), ("create-worktree", "b"), ("spawn", "b")]
    assert not (repo / ".fleet").exists() and not (repo / ".git" / "fleet").exists(), "diff --out wrote into the repo"

    applied = fleet_in_process("apply", "plan.json", cwd=repo)  # no --yes: the saved plan is what was reviewed
    assert applied.returncode == 0, applied.stdout + applied.stderr
    done = [line.split()[1:3] for line in applied.stdout.splitlines() if ": ok " in line]
    assert [(kind, agent.rstrip(":")) for kind, agent in done] == planned
    assert {r["phase"] for r in status_in_process(repo).values()} == {"Running"}


def test_plan_printed_with_o_plan_is_the_same_saved_plan(repo: Path) -> None:
    _fleet(repo, first=["sleep", "300"])
    proc = fleet_in_process("diff", "fleet.yaml", "-o", "plan", cwd=repo)
    assert proc.returncode == 1
    (repo / "plan.json").write_text(proc.stdout)
    assert json.loads(proc.stdout)["kind"] == "SavedPlan"
    dry = fleet_in_process("apply", "plan.json", "--dry-run", cwd=repo)
    assert dry.returncode == 0 and "The saved plan is current" in dry.stdout
    assert not (repo / ".fleet" / "worktrees").exists()
    assert fleet_in_process("apply", "plan.json", cwd=repo).returncode == 0


def test_a_saved_plan_is_refused_when_the_spec_changed(repo: Path) -> None:
    path = _fleet(repo, first=["sleep", "300"])
    fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    path.write_text(path.read_text().replace("prompt: work", "prompt: other work"))
    proc = fleet_in_process("apply", "plan.json", cwd=repo)
    assert proc.returncode == 1
    assert "spec changed since the plan was made" in proc.stderr and "sha256" in proc.stderr
    assert "fleet diff" in proc.stderr  # the hint: make a new plan
    assert "fleet/t/a" not in git(repo, "branch", "--list")  # nothing was done


def test_a_saved_plan_is_refused_when_a_glob_expands_differently(repo: Path) -> None:
    (repo / "items").mkdir()
    (repo / "items" / "one.txt").write_text("1\n")
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: w-{{item}}
          forEach: {{glob: "items/*.txt"}}
          tier: local
          command: {agents.argv(script, "sleep", "300")}
    """)
    fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    (repo / "items" / "two.txt").write_text("2\n")  # the file is byte-for-byte the same
    proc = fleet_in_process("apply", "plan.json", cwd=repo)
    assert proc.returncode == 1
    assert "spec changed since the plan was made" in proc.stderr and "expands to other desired" in proc.stderr


def test_a_saved_plan_is_refused_when_the_observed_state_moved(repo: Path) -> None:
    _fleet(repo, first=["sleep", "300"], second=["sleep", "300"])
    fleet_in_process("apply", "fleet.yaml", "--target", "a", "--yes", cwd=repo, check=True)
    made = fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    assert made.returncode == 1
    saved = json.loads((repo / "plan.json").read_text())
    assert saved["observed"]["state"]["agents"]["a"]["phase"] == "Running"
    assert [(a["kind"], a["agent"]) for a in saved["plan"]["actions"]] == [("create-worktree", "b"), ("spawn", "b")]
    os.killpg(status_in_process(repo)["a"]["pid"], signal.SIGTERM)  # the session ends after the plan was made
    wait_ended(repo)
    assert status_in_process(repo)["a"]["phase"] == "Failed"
    proc = fleet_in_process("apply", "plan.json", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "observed state moved since the plan was made: agent a phase Running -> Failed" in proc.stderr
    assert "fleet/t/b" not in git(repo, "branch", "--list")
    dry = fleet_in_process("apply", "plan.json", "--dry-run", cwd=repo)
    assert dry.returncode == 1 and "agent a phase Running -> Failed" in dry.stderr
    # a new plan made now applies
    fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    assert fleet_in_process("apply", "plan.json", cwd=repo).returncode == 0
    assert status_in_process(repo)["b"]["phase"] == "Running"


def test_a_saved_plan_is_refused_when_a_worktree_moved(repo: Path) -> None:
    _fleet(repo, first=["commit"], second=["sleep", "300"])
    fleet_in_process("apply", "fleet.yaml", "--target", "a", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    assert status_in_process(repo)["a"]["phase"] == "Succeeded"
    fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    worktree = repo / ".fleet" / "worktrees" / "a"
    (worktree / "more.txt").write_text("more\n")
    git(worktree, "add", "more.txt")
    git(worktree, "commit", "-qm", "more")
    proc = fleet_in_process("apply", "plan.json", cwd=repo)
    assert proc.returncode == 1
    assert "observed state moved since the plan was made: agent a worktree.head" in proc.stderr


def test_a_saved_plan_takes_no_target_or_archive(repo: Path) -> None:
    _fleet(repo, first=["sleep", "300"])
    fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    proc = fleet_in_process("apply", "plan.json", "--target", "a", cwd=repo)
    assert proc.returncode == 1 and "a saved plan already fixes its targets" in proc.stderr


def test_a_plan_saved_with_a_target_keeps_it_and_a_running_session_is_no_change(repo: Path) -> None:
    _fleet(repo, first=["sleep", "300"], second=["sleep", "300"])
    fleet_in_process("apply", "fleet.yaml", "--target", "a", "--yes", cwd=repo, check=True)
    pid = status_in_process(repo)["a"]["pid"]
    fleet_in_process("diff", "fleet.yaml", "--target", "b", "--out", "plan.json", cwd=repo)
    assert json.loads((repo / "plan.json").read_text())["options"]["targets"] == ["b"]
    assert fleet_in_process("apply", "plan.json", cwd=repo).returncode == 0  # a still runs: nothing moved
    rows = status_in_process(repo)
    assert rows["b"]["phase"] == "Running" and rows["a"]["pid"] == pid


def test_plain_json_plan_output_is_not_a_saved_plan(repo: Path) -> None:
    _fleet(repo, first=["sleep", "300"])
    (repo / "plan.json").write_text(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    proc = fleet_in_process("apply", "plan.json", cwd=repo)
    assert proc.returncode == 1 and "is `fleet diff -o json` output" in proc.stderr and "--out PLAN" in proc.stderr
