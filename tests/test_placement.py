"""spec.placement and spec.remote without a Ray cluster: validation, the ray demo fleet run with
`engine: local`, and a clear error when Ray is not installed (tests/test_ray_engine.py has the rest)."""
from __future__ import annotations

import os
from pathlib import Path

from conftest import FLEETS, fleet, git, status, wait_until, write_fleet

RAY_FLEET = """
    apiVersion: fleet/v1alpha1
    kind: Fleet
    metadata: {name: scale}
    spec:
      placement: {engine: ray, address: "127.0.0.1:1"%s}
      tiers: {local: {runtime: command}}
      agents:
        - {name: one, tier: local, command: ["true"]}
"""


def test_engine_ray_needs_a_remote(repo: Path) -> None:
    write_fleet(repo, RAY_FLEET % "")
    proc = fleet("validate", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1
    assert "fleet.yaml:5:" in proc.stderr and "placement.engine ray needs spec.remote" in proc.stderr
    assert "remote of spec.repo, e.g. origin" in proc.stderr


def test_a_node_workdir_must_not_be_relative(repo: Path) -> None:
    write_fleet(repo, (RAY_FLEET % ", workdir: nodes").replace("spec:\n", "spec:\n      remote: origin\n"))
    proc = fleet("validate", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1 and "'nodes' is relative; it is a directory on each node" in proc.stderr


def test_delivery_of_a_ray_fleet_needs_the_target_pushed(repo: Path) -> None:
    body = (RAY_FLEET % "").replace("spec:\n", "spec:\n      remote: origin\n")
    write_fleet(repo, body + "      delivery: {into: integration, ungated: true}\n")
    proc = fleet("validate", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1 and "delivery with placement.engine ray needs the target pushed" in proc.stderr
    assert "push: {remote: origin}" in proc.stderr
    write_fleet(repo, body + "      delivery: {into: integration, ungated: true, push: {remote: origin}}\n")
    proc = fleet("validate", "fleet.yaml", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_secrets_dir_must_not_be_relative(repo: Path) -> None:
    write_fleet(repo, (RAY_FLEET % ", secretsDir: secrets").replace("spec:\n", "spec:\n      remote: origin\n"))
    proc = fleet("validate", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1 and "'secrets' is relative; it is a directory on each node" in proc.stderr


def test_a_saved_plan_of_a_ray_fleet_is_refused_before_anything_is_read(repo: Path) -> None:
    write_fleet(repo, (RAY_FLEET % "").replace("spec:\n", "spec:\n      remote: origin\n"))
    for args in (["--out", "plan.json"], ["-o", "plan"], ["--connect", "--out", "plan.json"]):
        proc = fleet("diff", "fleet.yaml", *args, cwd=repo)
        assert proc.returncode == 2, proc.stdout + proc.stderr  # errors.EXIT_DIFF_ERROR
        assert "saved plans are not supported with placement.engine ray" in proc.stderr
        assert "cannot connect" not in proc.stderr  # refused up front: the cluster at 127.0.0.1:1 was never tried
        assert not (repo / "plan.json").exists()


def test_a_ray_fleet_without_ray_says_how_to_install_it(repo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    write_fleet(repo, (RAY_FLEET % "").replace("spec:\n", "spec:\n      remote: origin\n"))
    for command in (["status", "fleet.yaml"], ["diff", "fleet.yaml", "--connect"], ["apply", "fleet.yaml", "--yes"]):
        # keep PYTHONPATH after the fake: the tree under test, not the installed one
        proc = fleet(*command, cwd=repo, env={"PYTHONPATH": os.pathsep.join([str(fake.parent), *filter(None, [
            os.environ.get("PYTHONPATH")])])})
        assert proc.returncode in (1, 2), proc.stdout + proc.stderr
        assert "needs Ray, which is not installed" in proc.stderr
        assert "pip install 'fleet-reconciler[ray]'" in proc.stderr
    assert not (repo / ".fleet" / "worktrees").exists()


def test_the_ray_demo_fleet_runs_here_with_engine_local(repo: Path) -> None:
    text = (FLEETS / "ray-demo.yaml").read_text()
    assert "    engine: ray " in text
    (repo / "fleet.yaml").write_text(text.replace("    engine: ray ", "    engine: local ")
                                     .replace('DEMO_DELAY: "1"', 'DEMO_DELAY: "0.1"'))

    def done() -> bool:
        fleet("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
        return all(r["phase"] == "Succeeded" for r in status(repo).values())

    wait_until(done, timeout=90, interval=0.2)
    rows = status(repo)
    assert len(rows) == 6 and all(r["node"] is None and r["ahead"] == 1 for r in rows.values())
    assert "NODE" not in fleet("status", "fleet.yaml", cwd=repo, check=True).stdout
    for item in ("parser", "storage", "api", "cli", "docs", "tests"):
        assert "notes on the task" in git(repo, "log", "--format=%s", "-1", f"fleet/ray-demo/notes-{item}")
