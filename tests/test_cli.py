"""The command line itself: help with examples, defaults, crash handling."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FLEETS, fleet_in_process

from reconciler.errors import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK, exit_code
from reconciler.spec.schema import schema_text

COMMANDS = ["validate", "diff", "apply", "status", "describe", "logs", "delete", "archives", "restore", "reconcile",
            "lock", "schema", "force-unlock", "ui"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    proc = fleet_in_process(command, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "Usage: fleet" in proc.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "force-unlock"])
def test_help_shows_examples(command: str, tmp_path: Path) -> None:
    assert "Example" in fleet_in_process(command, "--help", cwd=tmp_path).stdout


def test_status_get_agents_and_logs_default_to_fleet_yaml_here(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    rows = json.loads(fleet_in_process("status", "-o", "json", cwd=repo, check=True).stdout)["agents"]
    assert [r["agent"] for r in rows] == ["notes-parser", "notes-storage", "notes-api"]
    same = json.loads(fleet_in_process("get", "agents", "-o", "json", cwd=repo, check=True).stdout)["agents"]
    assert [r["agent"] for r in same] == [r["agent"] for r in rows]
    proc = fleet_in_process("logs", "notes-api", cwd=repo)
    assert proc.returncode == 1 and "has not run yet" in proc.stderr


def test_missing_default_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = fleet_in_process("status", cwd=tmp_path)
    assert proc.returncode == 2 and "no ./fleet.yaml here" in proc.stderr


def test_version(tmp_path: Path) -> None:
    assert fleet_in_process("--version", cwd=tmp_path).stdout.startswith("fleet, version ")


def test_describe_defaults_to_fleet_yaml_here_too(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    row = json.loads(fleet_in_process("describe", "notes-api", "-o", "json", cwd=repo, check=True).stdout)
    assert (row["agent"], row["phase"]) == ("notes-api", "Pending")
    named = fleet_in_process("describe", "fleet.yaml", "notes-api", "-o", "json", cwd=repo, check=True)
    assert json.loads(named.stdout) == row
    # the file alone: NAME is missing, not an agent 'fleet.yaml'
    proc = fleet_in_process("describe", "fleet.yaml", cwd=repo)
    assert proc.returncode == 2 and "missing NAME: which agent of fleet.yaml?" in proc.stderr


# One mapping from what a pass did to the exit code (apply, delete, the loop): refused work wins.
@pytest.mark.parametrize(("blocked", "failed", "code"), [(False, False, EXIT_OK), (False, True, EXIT_ERROR),
                                                         (True, False, EXIT_BLOCKED), (True, True, EXIT_BLOCKED)])
def test_exit_code_of_a_pass(blocked: bool, failed: bool, code: int) -> None:
    assert exit_code(blocked=blocked, failed=failed) == code


def test_schema_prints_and_writes_the_same_text(tmp_path: Path) -> None:
    assert fleet_in_process("schema", cwd=tmp_path, check=True).stdout == schema_text()
    fleet_in_process("schema", "--out", "s.json", cwd=tmp_path, check=True)
    assert (tmp_path / "s.json").read_text() == schema_text()


def test_schema_write_error_goes_through_the_error_handler(tmp_path: Path) -> None:
    proc = fleet_in_process("schema", "--out", str(tmp_path / "no" / "dir" / "x.json"), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (f"error: cannot write the schema to {tmp_path / 'no' / 'dir' / 'x.json'}: No such file "
                           "or directory\nhint: pass --out a path in a directory that exists and you can write to\n")


def test_reconcile_needs_watch_or_once_as_a_usage_error(tmp_path: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", tmp_path / "fleet.yaml")
    for extra in ([], ["--watch", "--once"]):
        proc = fleet_in_process("reconcile", "fleet.yaml", *extra, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Error: choose one of --watch (run until stopped) or --once (one pass, for cron/systemd)" in proc.stderr


def test_reconcile_once_reports_a_skipped_tick_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text("apiVersion: fleet/v1alpha1\nkind: Fleet\n")
    proc = fleet_in_process("reconcile", "fleet.yaml", "--once", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert " tick skipped: fleet.yaml:1:1: missing required key metadata" in proc.stderr


def test_diff_of_a_saved_plan_points_to_apply_dry_run(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    fleet_in_process("diff", "fleet.yaml", "--out", "plan.json", cwd=repo)
    assert (repo / "plan.json").is_file()
    proc = fleet_in_process("diff", "plan.json", cwd=repo)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("error: plan.json is a saved plan, not a fleet file\nhint: check that it is still current "
                           "with `fleet apply plan.json --dry-run`; apply it with `fleet apply plan.json`\n")
    (repo / "printed.json").write_text(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)
    proc = fleet_in_process("diff", "printed.json", cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: printed.json is a plan printed by `fleet diff -o json`, not a fleet file\n")
