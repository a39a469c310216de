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
    for op in ("apply", "diff", "diff-prune", "tick", "status"):
        assert ops[op]["fleet"]["samples"] and ops[op]["floor"]["samples"], op
        assert ops[op]["ratio"] > 0, op
    assert ops["tick"]["loop_rss_mb"] > 0
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
