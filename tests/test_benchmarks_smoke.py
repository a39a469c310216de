"""The benchmark harness (benchmarks/, docs/benchmarks.md) works end to end at N=10.

Only the harness is checked: every measurement is made and leaves nothing behind.
No timing is asserted (that is what `python -m benchmarks.run` itself is for).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import ROOT


@pytest.mark.parametrize("mode", [[], ["--trivial"]], ids=["sleeping", "trivial"])
def test_benchmark_harness_runs_at_n10_and_cleans_up(tmp_path: Path, mode: list[str]) -> None:
    out, work = tmp_path / "results", tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--sizes", "10", "--repeat", "1",
                           "--files", "50", "--skip", "startup", "--no-plot", "--out", str(out),
                           "--workdir", str(work), *mode],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "latest.json").read_text())
    ops = results["sizes"]["10"]
    for op in ("apply", "diff", "diff-prune", "tick", "status", "status-loop", "ui-fleet"):
        assert ops[op]["fleet"]["samples"] and ops[op]["floor"]["samples"], op
        assert ops[op]["ratio"] > 0, op
    assert ops["tick"]["loop_rss_mb"] > 0
    assert ops["tick"]["loop_ticks"] == 100 and ops["tick"]["loop_rss_end_mb"] > 0  # --ticks' default
    assert "| 10 | fleet apply (from nothing) |" in (out / "latest.md").read_text()
    assert "fleet diff (converged)" in proc.stdout
    # everything it made is gone: the work dir and every process it started
    assert list(work.iterdir()) == []
    run_id = results["config"]["run_id"]
    left = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("FLEET_BENCH_RUN") == run_id:
                left.append(p.pid)
        except (psutil.Error, OSError):
            continue
    assert left == []


def test_the_marginal_cost_is_the_cost_of_each_agent_added_between_sizes() -> None:
    from benchmarks.run import marginal, marginal_cells

    def op(wall: float, cpu: float, floor_wall: float, floor_cpu: float) -> dict[str, dict[str, float]]:
        return {"fleet": {"wall": wall, "cpu": cpu}, "floor": {"wall": floor_wall, "cpu": floor_cpu}}

    sizes = {1000: {"tick": op(0.2, 0.1, 3.0, 2.0)}, 3000: {"tick": op(1.0, 0.5, 9.0, 6.0)},
             100: {"tick": op(0.1, 0.05, 0.3, 0.2), "diff": op(0.3, 0.2, 0.01, 0.01)}}
    assert marginal(sizes, "tick") == [(100, 1000, pytest.approx(0.1 / 900 * 1000), pytest.approx(0.05 / 900 * 1000)),
                                       (1000, 3000, pytest.approx(0.4), pytest.approx(0.2))]
    assert marginal(sizes, "diff") == []  # one size: nothing added
    assert marginal_cells(sizes, "tick")[1] == "1000->3000: 0.40 / 0.20 (3.00 / 2.00)"
