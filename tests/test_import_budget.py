"""The start-up import budget (docs/benchmarks.md "Start-up"): what each read-only command loads.

No timing: each command runs in a fresh interpreter, in process, and the test reads
`sys.modules` afterwards. What a command must never load is listed per command, so a new
import of the dashboard, OpenTelemetry's exporters, GitPython or the lock library on the
path of `fleet diff` or `fleet status` fails here instead of slowing every call.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, git, write_fleet

PROBE = """
import json, runpy, sys
sys.argv = ["fleet", *sys.argv[1:]]
try:
    runpy.run_module("reconciler.cli.main", run_name="__main__")
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""

# never on the read-only paths: the web dashboard and its server, OpenTelemetry (telemetry is
# off in this fleet), GitPython (fleet runs git itself), locks (nothing is acted on), HTTP (no notify)
NEVER = ("reconciler.ui", "starlette", "uvicorn", "opentelemetry", "git", "gitdb", "filelock", "asyncio", "ssl",
         "http.client", "apscheduler", "reconciler.engines.executor", "reconciler.engines.ray")
BUDGET = {
    "--version": NEVER + ("rich", "pydantic", "psutil", "ruamel", "reconciler.spec"),
    "validate": NEVER + ("psutil", "reconciler.observe.snapshot", "reconciler.plan.planner"),
    # on a pipe (as here) the plan is written without Rich (commands/diff.py run_plain); the local
    # engine's acting steps (sessions, gates, archives) are imported where they act
    "diff": NEVER + ("rich", "reconciler.act.sessions", "reconciler.act.gates", "reconciler.act.restore",
                     "reconciler.act.archive"),
    "status": NEVER,
}


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("budget") / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# test repo\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial commit")
    write_fleet(path, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - {name: a, tier: local, command: ["true"]}
    """)
    return path


def loaded_by(repo: Path, *args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=repo, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), "PYTHONPATH": str(ROOT),
                               "COLUMNS": "120", "GIT_CONFIG_GLOBAL": "/dev/null"}, timeout=120)
    line = next(line for line in proc.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


@pytest.mark.parametrize("command", list(BUDGET))
def test_a_read_only_command_loads_only_what_it_needs(small_repo: Path, command: str) -> None:
    args = [command] if command.startswith("-") else [command, "fleet.yaml"]
    modules = loaded_by(small_repo, *args)
    assert "reconciler.cli" in modules  # the probe ran the CLI
    if not command.startswith("-"):
        assert f"reconciler.commands.{command}" in modules  # and the command
    loaded = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in BUDGET[command]))
    assert loaded == [], f"fleet {command} imports {loaded}"
