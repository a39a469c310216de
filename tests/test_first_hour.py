"""Issue 15, items 3 to 6, end to end: what a new user hit in the first hour.

Real repos, real sessions, the real CLI. The pure rules behind these are in
tests/test_lifecycle.py (record state machine), tests/test_planner.py (no restart of a held
run) and the `program_warnings` rows here.
"""
from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import agents
import pytest
from conftest import fleet_in_process, status_in_process, wait_ended, write_fleet

from reconciler.act.programs import program_warnings
from reconciler.engines import engine_for
from reconciler.spec.loader import load_fleet, load_fleet_text

MISSING = """
    apiVersion: fleet/v1alpha1
    kind: Fleet
    metadata: {name: t}
    spec:
      tiers: {local: {runtime: command}}
      agents:
        - name: abs
          tier: local
          command: [/nonexistent/agent.sh]
          restart: OnFailure
        - name: bare
          tier: local
          command: [no-such-program-fleet-test]
          restart: Always
        - name: rel
          tier: local
          command: [tools/agent.sh]
          restart: OnFailure
"""


def conditions(row: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["type"]: c for c in row["conditions"]}


# --- item 3: a missing runtime or command ------------------------------------------------------------------

def test_a_program_that_cannot_start_is_a_failed_action_with_its_cause_and_no_restart_loop(repo: Path) -> None:
    write_fleet(repo, MISSING)
    applied = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "Apply complete: 3 done, 3 failed, 0 blocked." in applied.stdout  # 3 worktrees done, 3 spawns failed
    assert "spawn           abs: failed cannot start '/nonexistent/agent.sh': No such file or directory" \
        in applied.stdout
    assert "cannot start 'no-such-program-fleet-test': No such file or directory (searched PATH)" in applied.stdout
    worktree = repo / ".fleet" / "worktrees" / "rel"
    assert f"cannot start 'tools/agent.sh': No such file or directory (in {worktree})" in applied.stdout
    rows = status_in_process(repo)
    for name, program in (("abs", "/nonexistent/agent.sh"), ("bare", "no-such-program-fleet-test"),
                          ("rel", "tools/agent.sh")):
        row = rows[name]
        assert row["phase"] == "Failed" and row["exit_code"] == 127
        assert row["reason"].startswith(f"cannot start {program!r}: No such file or directory")
        assert row["reason"].endswith("; not restarted until the spec changes")
        cond = conditions(row)
        assert (cond["StartFailed"]["status"], cond["StartFailed"]["reason"]) == ("True", "NotFound")
        assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "StartFailed")
        assert "CrashLoopBackOff" not in cond
        # item 5: the run did not finish before it started
        assert row["finished_at"] >= row["started_at"], row
    describe = fleet_in_process("describe", "fleet.yaml", "abs", cwd=repo, check=True).stdout
    assert "Reason:              cannot start '/nonexistent/agent.sh': No such file or directory" in describe
    # no restart loop under OnFailure or Always: nothing to do until the spec changes
    diff = fleet_in_process("diff", "fleet.yaml", cwd=repo)
    assert diff.returncode == 0 and "No changes." in diff.stdout, diff.stdout
    again = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert again.returncode == 0 and "No changes." in again.stdout
    # a fixed spec starts again
    (repo / "fleet.yaml").write_text((repo / "fleet.yaml").read_text().replace("/nonexistent/agent.sh", "/bin/sh"))
    fixed = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    assert [(a["kind"], a["agent"]) for a in fixed["actions"]] == [("spawn", "abs")]


def test_validate_and_diff_warn_about_programs_not_on_path_with_file_line_col(repo: Path) -> None:
    write_fleet(repo, MISSING.replace("tiers: {local: {runtime: command}}",
                                      "tiers: {local: {runtime: command}, claude: {runtime: claude}}") + """\
        - name: writer
          tier: claude
          prompt: hi
""")
    only_git = repo.parent / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    env = {"PATH": str(only_git)}  # no claude, no no-such-program; fleet's own bin dir is still searched
    validated = fleet_in_process("validate", "fleet.yaml", cwd=repo, env=env)
    assert validated.returncode == 0 and validated.stdout == "fleet.yaml: valid (fleet t, 4 agents)\n"
    warnings = [line for line in validated.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: fleet.yaml:9:17: agent abs: command program '/nonexistent/agent.sh' does not exist",
        "warning: fleet.yaml:13:17: agent bare: command program 'no-such-program-fleet-test' is not on PATH",
        "warning: fleet.yaml:5:56: tier claude (runtime claude) runs 'claude', which is not on PATH",
    ], validated.stderr
    assert "hint: install claude (docs/runtimes.md)" in validated.stderr
    assert "StartFailed" in validated.stderr  # what happens if it is not fixed
    assert "tools/agent.sh" not in validated.stderr  # relative: resolved in the worktree at run time
    diffed = fleet_in_process("diff", "fleet.yaml", cwd=repo, env=env)
    assert diffed.returncode == 1 and diffed.stderr.count("warning:") == 3
    assert "warning" not in diffed.stdout


def warnings_for(tmp_path: Path, command: list[str], env: dict[str, object] | None = None) -> list[str]:
    doc = {"apiVersion": "fleet/v1alpha1", "kind": "Fleet", "metadata": {"name": "t"},
           "spec": {"tiers": {"local": {"runtime": "command"}},
                    "agents": [{"name": "a", "tier": "local", "command": command, "env": env or {}}]}}
    loaded = load_fleet_text(json.dumps(doc), path=tmp_path / "fleet.yaml", shown="fleet.yaml", files=[])
    return [p.message for p in program_warnings(loaded)]


def test_how_a_program_is_decided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    plain = bin_dir / "plain"
    plain.write_text("not a program\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("OTHER_PATH", raising=False)
    a = "agent a: command program"
    assert warnings_for(tmp_path, ["tool"]) == []  # a bare name on PATH
    assert warnings_for(tmp_path, [str(tool)]) == []  # an absolute executable
    assert warnings_for(tmp_path, ["tools/run.sh"]) == []  # relative: decided in the worktree at run time
    assert warnings_for(tmp_path, ["python"]) == []  # fleet's own bin directory comes first in a session
    assert warnings_for(tmp_path, ["nope"]) == [f"{a} 'nope' is not on PATH"]
    assert warnings_for(tmp_path, ["plain"]) == [f"{a} 'plain' is on PATH but not executable"]
    assert warnings_for(tmp_path, [str(plain)]) == [f"{a} '{plain}' is not an executable file"]
    assert warnings_for(tmp_path, [str(bin_dir)]) == [f"{a} '{bin_dir}' is not an executable file"]
    assert warnings_for(tmp_path, ["/nonexistent/x"]) == [f"{a} '/nonexistent/x' does not exist"]
    # the agent's own PATH is the session's
    assert warnings_for(tmp_path, ["tool"], env={"PATH": str(tmp_path)}) == [f"{a} 'tool' is not on PATH"]
    assert warnings_for(tmp_path, ["tool"], env={"PATH": {"fromEnv": "OTHER_PATH"}}) == []  # unknown here
    monkeypatch.setenv("OTHER_PATH", str(tmp_path))
    assert warnings_for(tmp_path, ["tool"], env={"PATH": {"fromEnv": "OTHER_PATH"}}) == [f"{a} 'tool' is not on PATH"]


def test_ray_fleets_are_not_checked_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    doc = {"apiVersion": "fleet/v1alpha1", "kind": "Fleet", "metadata": {"name": "t"},
           "spec": {"remote": "origin", "placement": {"engine": "ray"}, "tiers": {"c": {"runtime": "claude"}},
                    "agents": [{"name": "a", "tier": "c", "prompt": "hi"}]}}
    loaded = load_fleet_text(json.dumps(doc), path=tmp_path / "fleet.yaml", shown="fleet.yaml", files=[])
    assert program_warnings(loaded) == []  # its sessions run on the cluster's nodes


# --- item 4: gates that failed are shown and counted as failed ---------------------------------------------

def test_a_gate_that_gave_up_is_shown_as_failed_and_counted(repo: Path) -> None:
    script = agents.install(repo.parent)
    agents.fleet_yaml(repo, f"""
        - name: g1
          tier: local
          command: {agents.argv(script, "gatefix", str(repo.parent), "fix-never")}
          gates: [never]
    """, spec="""
        gates:
          never: {run: "echo 'tests: 3 failed'; exit 1", timeout: 30s, maxAttempts: 2}
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_ended(repo)
    assert "run-gate" in status_in_process(repo)["g1"]["reason"]
    row = status_in_process(repo)["g1"]
    assert (conditions(row)["Ready"]["status"], conditions(row)["Ready"]["reason"]) == ("Unknown", "GatesPending")
    fed_back = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert fed_back.returncode == 0, fed_back.stdout + fed_back.stderr
    assert "~ run-gate        g1: gate failed gate never failed (1/2): exit 1; tests: 3 failed; resuming: pid" \
        in fed_back.stdout
    assert "Apply complete: 0 done, 0 failed, 0 blocked, 1 gate(s) failed." in fed_back.stdout
    wait_ended(repo)
    assert "run-gate" in status_in_process(repo)["g1"]["reason"]
    gave_up = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert gave_up.returncode == 0  # a gate failing is the reconciler doing its job (docs/output.md)
    assert "~ run-gate        g1: gate failed gate never failed 2/2 times: exit 1; tests: 3 failed" in gave_up.stdout
    assert " ok " not in gave_up.stdout
    assert "Apply complete: 0 done, 0 failed, 0 blocked, 1 gate(s) failed." in gave_up.stdout
    row = status_in_process(repo)["g1"]
    assert row["phase"] == "Failed" and row["reason"] == "gate never failed 2/2 times: exit 1; tests: 3 failed"
    cond = conditions(row)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "GatesFailed")
    assert (cond["GatesPassed"]["status"], cond["GatesPassed"]["reason"]) == ("False", "GatesFailed")


# --- item 6: corrupt or unknown is not zero -----------------------------------------------------------------

def test_an_unreadable_exit_record_is_kept_aside_and_the_run_is_not_restarted(repo: Path) -> None:
    write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - name: a1
              tier: local
              command: [sh, -c, "exit 0"]
              restart: Always
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    exit_file = engine_for(load_fleet(repo / "fleet.yaml")).store.exit_path("a1")
    wait_ended(repo)
    assert exit_file.exists()
    exit_file.write_text('{"pid": 12')  # a torn or damaged write
    shown = status_in_process(repo)["a1"]  # status writes nothing but tells the truth already
    assert shown["phase"] == "Failed" and shown["reason"].startswith("exit status unknown: exit record ")
    assert exit_file.read_text() == '{"pid": 12'
    applied = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert applied.returncode == 0 and "No changes." in applied.stdout, applied.stdout  # not restarted
    assert not exit_file.exists()
    kept = list(exit_file.parent.glob("a1.exit.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == '{"pid": 12'  # kept aside, never deleted
    row = status_in_process(repo)["a1"]
    assert row["phase"] == "Failed" and "not restarted until someone looks" in row["reason"]
    cond = conditions(row)
    assert (cond["ExitRecordCorrupt"]["status"], cond["Ready"]["reason"]) == ("True", "ExitRecordCorrupt")
    assert "fleet logs FILE a1" in cond["ExitRecordCorrupt"]["message"]
    assert "SessionLost" not in json.dumps(row)
    assert fleet_in_process("diff", "fleet.yaml", cwd=repo).returncode == 0  # Always, yet no restart


def test_commits_ahead_that_cannot_be_counted_are_unknown_not_zero(repo: Path) -> None:
    subprocess.run(["git", "branch", "dev"], cwd=repo, check=True)
    write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          base: dev
          tiers: {local: {runtime: command}}
          agents:
            - name: a1
              tier: local
              command: [sh, -c, "exit 0"]
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    assert status_in_process(repo)["a1"]["ahead"] == 0
    subprocess.run(["git", "branch", "-D", "dev"], cwd=repo, check=True, capture_output=True)  # base is gone
    assert status_in_process(repo)["a1"]["ahead"] is None
    table = fleet_in_process("status", "fleet.yaml", cwd=repo, check=True).stdout
    cells = next(line for line in table.splitlines() if line.startswith("a1 ")).split()
    columns = next(line for line in table.splitlines() if "AHEAD" in line).split()
    assert cells[columns.index("AHEAD")] == "-" and cells[columns.index("DIRTY")] == "0"
    describe = fleet_in_process("describe", "fleet.yaml", "a1", cwd=repo, check=True).stdout
    assert "Commits ahead:       -\n" in describe
