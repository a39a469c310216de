"""fleet diff: one create per agent in a fresh repo, stable JSON, markdown, and no side effects."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from conftest import FLEETS, fleet_in_process, git, write_fleet


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime)
    return out


def test_diff_of_demo_fleet_in_fresh_repo_lists_one_create_per_agent(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    proc = fleet_in_process("diff", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    for agent in ("notes-parser", "notes-storage", "notes-api"):
        assert re.search(rf"\+ create-worktree +{agent} ", proc.stdout), proc.stdout
    assert "Plan: 3 worktree(s) to create, 2 to spawn, 1 waiting." in proc.stdout


def test_diff_json_is_documented_shape(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    proc = fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo)
    assert proc.returncode == 1
    plan = json.loads(proc.stdout)
    assert plan["kind"] == "Plan" and plan["fleet"] == "demo" and plan["changes"] is True
    kinds = [(a["kind"], a["agent"]) for a in plan["actions"]]
    assert kinds[:2] == [("create-worktree", "notes-parser"), ("spawn", "notes-parser")]
    assert plan["summary"] == {"create-worktree": 3, "spawn": 2, "wait": 1}  # tier local: maxRunning 2
    wait = next(a for a in plan["actions"] if a["kind"] == "wait")
    assert "maxRunning=2" in wait["reason"] and wait["details"]["then"] == "spawn"
    assert all(a["reason"] for a in plan["actions"])


def test_diff_target_limits_the_plan(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    plan = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", "--target", "notes-api", cwd=repo).stdout)
    assert {a["agent"] for a in plan["actions"]} == {"notes-api"}


def test_diff_markdown_is_a_pr_comment(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    md = fleet_in_process("diff", "fleet.yaml", "-o", "markdown", cwd=repo).stdout
    assert md.startswith("<!-- fleet-plan:demo -->")
    assert "<details>" in md and "<code>notes-api</code>" in md


def test_diff_has_no_side_effects_and_runs_nothing_from_the_file(repo: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: evil}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          gates: {{pwn: {{run: "touch {canary}"}}}}
          agents:
            - name: a
              tier: local
              command: [sh, -c, "touch {canary}"]
              gates: [pwn]
    """)
    git(repo, "add", "fleet.yaml")
    git(repo, "commit", "-qm", "fleet")
    before = _snapshot(repo)
    proc = fleet_in_process("diff", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1
    assert _snapshot(repo) == before, "fleet diff wrote to the repo"
    assert not canary.exists(), "fleet diff ran a command from the file"
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".fleet").exists() and not (repo / ".git" / "fleet").exists()


def test_diff_exits_2_on_invalid_file(repo: Path) -> None:
    write_fleet(repo, "apiVersion: fleet/v1alpha1\nkind: Fleet\n")
    proc = fleet_in_process("diff", "fleet.yaml", cwd=repo)
    assert proc.returncode == 2
    assert "missing required key metadata" in proc.stderr


def test_diff_outside_a_git_repo_is_a_clear_error(tmp_path: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", tmp_path / "fleet.yaml")
    proc = fleet_in_process("diff", "fleet.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "is not a git repository" in proc.stderr and "Traceback" not in proc.stderr
