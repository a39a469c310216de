"""The command line itself: help with examples, defaults, crash handling."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import FLEETS, fleet

COMMANDS = ["validate", "diff", "apply", "status", "describe", "logs", "delete", "archives", "reconcile",
            "lock", "schema", "force-unlock"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    proc = fleet(command, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "Usage: fleet" in proc.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "force-unlock"])
def test_help_shows_examples(command: str, tmp_path: Path) -> None:
    assert "Example" in fleet(command, "--help", cwd=tmp_path).stdout


def test_status_get_agents_and_logs_default_to_fleet_yaml_here(repo: Path) -> None:
    shutil.copy(FLEETS / "demo.yaml", repo / "fleet.yaml")
    rows = json.loads(fleet("status", "-o", "json", cwd=repo, check=True).stdout)["agents"]
    assert [r["agent"] for r in rows] == ["notes-parser", "notes-storage", "notes-api"]
    same = json.loads(fleet("get", "agents", "-o", "json", cwd=repo, check=True).stdout)["agents"]
    assert [r["agent"] for r in same] == [r["agent"] for r in rows]
    proc = fleet("logs", "notes-api", cwd=repo)
    assert proc.returncode == 1 and "has not run yet" in proc.stderr


def test_missing_default_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = fleet("status", cwd=tmp_path)
    assert proc.returncode == 2 and "no ./fleet.yaml here" in proc.stderr


def test_version(tmp_path: Path) -> None:
    assert fleet("--version", cwd=tmp_path).stdout.startswith("fleet, version ")
