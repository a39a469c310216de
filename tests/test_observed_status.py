"""`fleet status` reads what the running loop observed, and observes itself when it cannot trust it.

A real loop (`fleet reconcile --watch`) writes the snapshot, its marker and the history
(store/observed.py); status uses the snapshot only while that loop is alive, the file is
unchanged and every session it saw running still runs.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import agents
from conftest import fleet_in_process, wait_until, write_fleet

from reconciler.control.observed_status import history_point, read_view
from reconciler.store.observed import HISTORY_KEEP, StatusStore, common_dir_of, read_pointer


def fleet_file(repo: Path, tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    script = agents.install(tmp_path)
    done = tmp_path / "quick.done"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: obs}}
        spec:
          tiers: {{local: {{runtime: command}}}}
          agents:
            - name: quick
              tier: local
              command: {agents.argv(script, "until", str(done))}
            - name: sleeper
              tier: local
              command: {agents.argv(script, "sleep", "300")}
        {extra}""")
    return repo / "fleet.yaml", done


def start_loop(repo: Path, interval: str = "3600") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "reconcile", "fleet.yaml", "--watch",
                             "--interval", interval], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stop_loop(loop: subprocess.Popen[str]) -> str:
    loop.send_signal(signal.SIGTERM)
    return loop.communicate(timeout=30)[0]


def status_json(repo: Path, *args: str) -> dict:
    return json.loads(fleet_in_process("status", "fleet.yaml", "-o", "json", *args, cwd=repo, check=True).stdout)


def store_of(repo: Path) -> StatusStore:
    return StatusStore(repo / ".git" / "fleet", "obs")


def test_status_shows_the_loops_observation_while_it_runs_and_observes_itself_otherwise(
        repo: Path, tmp_path: Path) -> None:
    file, done = fleet_file(repo, tmp_path)
    assert status_json(repo).get("observedBy") is None  # no loop has ever run: observed now
    loop = start_loop(repo)  # one tick now, the next in an hour: only the first tick writes
    try:
        wait_until(lambda: read_view(file).view is not None, timeout=90)
        view = store_of(repo).read_snapshot()
        assert view is not None and view["observedBy"] == "loop"
        assert {a["agent"]: a["phase"] for a in view["agents"]} == {"quick": "Running", "sleeper": "Running"}
        assert sorted(view["sessions"]) == ["quick", "sleeper"]
        table = fleet_in_process("status", "fleet.yaml", cwd=repo, check=True).stdout
        assert "ago by the loop (pid " in table and "--refresh" in table
        data = status_json(repo)
        assert (data["observedBy"], data["observedAt"]) == ("loop", view["observedAt"])
        assert {a["agent"]: a["phase"] for a in data["agents"]} == {"quick": "Running", "sleeper": "Running"}
        # reading it loads no fleet file, no git and no psutil: neither pydantic nor GitPython is imported
        cold = subprocess.run([sys.executable, "-X", "importtime", "-m", "reconciler.cli.main", "status", "fleet.yaml"],
                              cwd=repo, capture_output=True, text=True, check=True)
        imported = {line.split("|")[-1].strip() for line in cold.stderr.splitlines() if line.startswith("import time")}
        assert "by the loop" in cold.stdout
        assert {"pydantic", "git", "reconciler.spec.loader", "psutil"} & imported == set()  # liveness: /proc
        # --refresh observes now, whatever the loop saw
        assert "observedBy" not in status_json(repo, "--refresh")
        assert "by the loop" not in fleet_in_process("status", "fleet.yaml", "--refresh", cwd=repo, check=True).stdout
        # a session the loop saw running has ended: its snapshot is not trusted, status observes
        done.write_text("")
        wait_until(lambda: read_view(file).why_not == "quick's session ended since the loop's last observation")
        data = status_json(repo)
        assert "observedBy" not in data
        assert {a["agent"]: a["phase"] for a in data["agents"]}["quick"] == "Succeeded"
    finally:
        out = stop_loop(loop)
    assert store_of(repo).read_loop() is None, out  # the loop's marker goes with it
    assert read_view(file).why_not == "no loop is running for this fleet"
    assert "observedBy" not in status_json(repo)


def test_a_changed_file_or_a_dead_loop_is_not_trusted(repo: Path, tmp_path: Path) -> None:
    file, _ = fleet_file(repo, tmp_path)
    loop = start_loop(repo)
    try:
        wait_until(lambda: read_view(file).view is not None, timeout=90)
        file.write_text(file.read_text() + "\n# an edit the loop has not read yet\n")
        assert read_view(file).why_not == "the file changed since the loop last read it"
        assert "observedBy" not in status_json(repo)
    finally:
        loop.kill()  # as a crash: the marker stays behind, its pid is gone
        loop.communicate(timeout=30)
    assert store_of(repo).read_loop() is not None
    assert read_view(file).why_not == "no loop is running for this fleet"


def test_the_loop_keeps_a_history_and_the_pointer_finds_the_store(repo: Path, tmp_path: Path) -> None:
    file, _ = fleet_file(repo, tmp_path)
    loop = start_loop(repo, interval="0.5")
    try:
        wait_until(lambda: len(store_of(repo).read_history()) >= 3, timeout=90)
    finally:
        stop_loop(loop)
    points = store_of(repo).read_history()
    assert all(set(p) == {"at", "spendTodayUsd", "spendTodayByTier", "phases"} for p in points)
    assert [p["at"] for p in points] == sorted(p["at"] for p in points)
    found = read_pointer(file)
    assert found is not None and (found.home, found.fleet) == (repo / ".git" / "fleet", "obs")
    # from a linked worktree the pointer is read in the same common dir
    assert common_dir_of(repo) == (repo / ".git").resolve()


def test_history_is_trimmed_to_its_last_lines(tmp_path: Path) -> None:
    store = StatusStore(tmp_path, "f")
    view = {"observedAt": "", "spendTodayUsd": 0.0, "spendTodayByTier": {}, "agents": [{"phase": "Running"}]}
    for i in range(HISTORY_KEEP * 2 + 5):
        store.append_history({**history_point({**view, "observedAt": f"{i:08d}"})})
    points = store.read_history(limit=HISTORY_KEEP * 3)
    assert len(points) <= HISTORY_KEEP * 2 + 5 and points[-1]["at"] == f"{HISTORY_KEEP * 2 + 4:08d}"
    assert len(points) >= HISTORY_KEEP
    assert points[-1]["phases"] == {"Running": 1}
