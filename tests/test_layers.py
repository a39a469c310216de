"""The package layering (.importlinter, docs/architecture.md): every package is in a layer,
layers only point down, only adapters touch git/psutil, and the planner is pure."""
from __future__ import annotations

import configparser
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

import reconciler

CONFIG = ROOT / ".importlinter"


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser


def test_every_contract_is_kept() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([lint, str(CONFIG)], cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    names = [s["name"] for k, s in _contracts().items() if k.startswith("importlinter:contract:")]
    flat = " ".join(out.split())  # lint-imports wraps long names
    for name in names:
        assert f"{' '.join(name.split())} KEPT" in flat, f"contract not reported kept: {name}\n{out}"


def test_every_package_is_in_a_layer() -> None:
    layers = _contracts()["importlinter:contract:layers"]["layers"]
    listed = {m.strip() for line in layers.splitlines() for m in line.split("|") if m.strip()}
    independent = _contracts()["importlinter:contract:demo-agent"]["modules"].split()
    top = {f"reconciler.{m.name}" for m in pkgutil.iter_modules(reconciler.__path__)}
    missing = top - listed - set(independent)
    assert not missing, f"in no contract: {sorted(missing)}"


def test_importing_the_planner_loads_neither_git_nor_psutil() -> None:
    # one interpreter for the planner and what it reads (tests/test_planner.py had its own copy of this)
    code = ("import sys, reconciler.plan.planner, reconciler.plan.status, reconciler.observe, "
            "reconciler.observe.model; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('git', 'psutil') or m in "
            "('reconciler.observe.gitcmd', 'reconciler.observe.gitrepo', 'reconciler.observe.processes')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
