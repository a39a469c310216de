"""Synthetic repos and fleets, the floor scripts, and cleaning up everything the benchmark started."""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

FLEET_NAME = "bench"
BRANCH_PREFIX = f"fleet/{FLEET_NAME}/"
# Every process the benchmark starts (fleet, the floor scripts, the sessions they spawn)
# carries these in its environment, so cleanup finds exactly ours and nothing else.
ENV_RUN = "FLEET_BENCH_RUN"  # one id per benchmark run
ENV_SCOPE = "FLEET_BENCH_SCOPE"  # the repo copy a command works in
SLEEP = "3600"


def agent_names(n: int) -> list[str]:
    return [f"a-{i:04d}" for i in range(n)]


def base_env(work: Path, run_id: str) -> dict[str, str]:
    """A clean environment: no inherited GIT_*/FLEET_*, a throwaway git config, our bin dir first."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "FLEET_", "OTEL_"))}
    cfg = work / "gitconfig"
    if not cfg.exists():
        cfg.write_text("[user]\n\tname = fleet bench\n\temail = bench@fleet.invalid\n"
                       "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
                       "[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
    bindir = str(Path(sys.executable).parent)
    env.update({"GIT_CONFIG_GLOBAL": str(cfg), "GIT_CONFIG_NOSYSTEM": "1", "COLUMNS": "200",
                "PATH": bindir + os.pathsep + env.get("PATH", ""), ENV_RUN: run_id,
                # bytecode cached, as after `pip install`, but kept out of the source tree
                "PYTHONPYCACHEPREFIX": str(work / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def make_template(path: Path, files: int, env: dict[str, str]) -> None:
    """A repo on `main` with `files` small Python files in 50-file packages, one commit."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, env=env, check=True)
    for i in range(files):
        pkg = path / "src" / f"pkg{i // 50:03d}"
        pkg.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{j}(x):\n    return x * {j} + {i}\n\n" for j in range(12))
        (pkg / f"mod{i % 50:03d}.py").write_text(f'"""Module {i}."""\n\n{body}')
    (path / "README.md").write_text("# benchmark repo\n")
    subprocess.run(["git", "add", "-A"], cwd=path, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "initial"], cwd=path, env=env, check=True)
    subprocess.run(["git", "gc", "-q"], cwd=path, env=env, check=True)  # packed, like a real clone


def copy_repo(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def fleet_yaml(repo: Path, names: list[str], *, file: str = "fleet.yaml", trivial: bool = False) -> Path:
    """N agents on the `command` runtime, each a sleeping process (`trivial`: one that exits at
    once and leaves the agent Succeeded, so 3,000 agents fit in memory); no caps, no gates."""
    command = "[\"true\"]" if trivial else f'[sleep, "{SLEEP}"]'
    items = ", ".join(f"'{n.removeprefix('a-')}'" for n in names)
    text = f"""\
apiVersion: fleet/v1alpha1
kind: Fleet
metadata: {{name: {FLEET_NAME}}}
spec:
  repo: .
  base: main
  worktrees: {{root: .fleet/worktrees, branchPrefix: {BRANCH_PREFIX}}}
  tiers:
    local: {{runtime: command, stallAfter: 24h}}
  reconcile: {{interval: 60s}}
  gc: {{prune: true}}
  agents:
    - name: a-{{item}}
      forEach: {{items: [{items}]}}
      tier: local
      prompt: benchmark agent {{item}}
      command: {command}
      restart: Never
"""
    path = repo / file
    path.write_text(text)
    return path


def _sh(path: Path, body: str) -> Path:
    path.write_text("set -e\n" + body)
    return path


def floor_apply_script(work: Path, repo: Path, names: list[str], *, trivial: bool = False) -> list[str]:
    """What `fleet apply` cannot avoid: `git worktree add -b` per agent, then the same processes
    fleet spawns (the detached session runner hosting `sleep`), one agent after the other."""
    (work / "names.txt").write_text("\n".join(names) + "\n")
    runner = f"{shlex.quote(sys.executable)} -m reconciler.act.session_host"
    session = "true" if trivial else f"sleep {SLEEP}"
    body = f"""cd {shlex.quote(str(repo))}
mkdir -p .fleet/worktrees .fleet/floor
while read name; do
  git worktree add -q -b "{BRANCH_PREFIX}$name" ".fleet/worktrees/$name" main
  (cd ".fleet/worktrees/$name" && {runner} --exit-file "$PWD/../../floor/$name.exit" -- {session} \\
      >/dev/null 2>>"../../floor/$name.log")
done < {shlex.quote(str(work / 'names.txt'))}
"""
    return ["/bin/sh", str(_sh(work / "floor-apply.sh", body))]


def floor_status_script(work: Path, repo: Path, names: list[str], *, ahead: bool, tag: str) -> list[str]:
    """`git worktree list --porcelain` plus `git status --porcelain` in each named worktree
    (plus `git rev-list --count main..BRANCH` with `ahead`: what `fleet status` shows)."""
    listing = work / f"floor-{tag}.txt"
    listing.write_text("\n".join(names) + ("\n" if names else ""))
    count = f'\n  git rev-list --count main..{BRANCH_PREFIX}"$name" >/dev/null' if ahead else ""
    body = f"""cd {shlex.quote(str(repo))}
git worktree list --porcelain >/dev/null
while read name; do
  git -C ".fleet/worktrees/$name" status --porcelain >/dev/null{count}
done < {shlex.quote(str(listing))}
"""
    return ["/bin/sh", str(_sh(work / f"floor-{tag}.sh", body))]


def ours(run_id: str, scope: str | None = None) -> list[psutil.Process]:
    """Live processes started by this benchmark run (in `scope`, if given)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get(ENV_RUN) == run_id and (scope is None or env.get(ENV_SCOPE) == scope):
            found.append(proc)
    return found


def kill_ours(run_id: str, scope: str | None = None) -> int:
    """SIGKILL every process of this run (of `scope`); returns how many there were.

    Scans again until none is left: a session host killed while it was starting its
    agent may have forked it after the first scan."""
    total = 0
    for _ in range(10):
        procs = ours(run_id, scope)
        if not procs:
            break
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        total += len(procs)
        time.sleep(0.2)
    return total


def remove_tree(path: Path) -> None:
    """rm -rf, quick for millions of files."""
    if path.exists():
        subprocess.run(["rm", "-rf", "--", str(path)], check=False)


def wait_for(check, timeout: float = 60.0, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
