"""Scripted agents for tests: real executables that edit, commit, sleep or crash.

Each is a tiny Python program written into the test's temp dir and run by the
`command` runtime, with its behaviour chosen by arguments: `sleep SECONDS`,
`crash [CODE]`, `commit [DELAY]`, `env [SECONDS]` (writes its environment to
env.json in its worktree, then sleeps), `until PATH` (runs until PATH exists, then exits 0).
`fleet_yaml` writes a fleet file around them, `for_each` the common one: `w-{item}` per item.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

HEADER = ("apiVersion: fleet/v1alpha1\nkind: Fleet\nmetadata: {{name: {name}}}\n"
          "spec:\n  tiers: {{local: {{runtime: command}}}}\n")

SCRIPT = textwrap.dedent('''\
    import json, os, subprocess, sys, time
    mode = sys.argv[1]
    agent = os.environ["FLEET_AGENT"]
    if mode == "sleep":
        print(f"{agent} sleeping", flush=True)
        time.sleep(float(sys.argv[2]))
        sys.exit(0)
    if mode == "crash":
        print(f"{agent} crashing", flush=True)
        sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    if mode == "commit":
        delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0
        time.sleep(delay)
        with open(f"{agent}.txt", "w") as f:
            f.write(os.environ.get("FLEET_PROMPT", "") + "\\n")
        subprocess.run(["git", "add", f"{agent}.txt"], check=True)
        subprocess.run(["git", "-c", "user.name=agent", "-c", "user.email=agent@fleet.invalid",
                        "commit", "-q", "-m", f"{agent} did its work"], check=True)
        cost = float(os.environ.get("AGENT_COST", "0"))
        print(json.dumps({"type": "result", "total_cost_usd": cost, "session_id": None}), flush=True)
        sys.exit(0)
    if mode == "gatefix":
        # first run commits a wrong answer; resumed with the gate's output, it fixes it
        resumed = os.environ.get("FLEET_RESUME") == "1"
        if resumed:
            with open(os.path.join(sys.argv[2], f"{agent}.message"), "a") as f:
                f.write(os.environ.get("FLEET_MESSAGE", "") + "\\n---\\n")
        with open("answer.txt", "w") as f:
            f.write("good\\n" if resumed and "fix-never" not in sys.argv[3:] else "bad\\n")
        subprocess.run(["git", "add", "answer.txt"], check=True)
        subprocess.run(["git", "-c", "user.name=agent", "-c", "user.email=agent@fleet.invalid",
                        "commit", "-q", "-m", "answer", "--allow-empty"], check=True)
        sys.exit(0)
    if mode == "crashlog":
        with open(sys.argv[2], "a") as f:
            f.write(f"{time.time()}\\n")
        sys.exit(3)
    if mode == "cost":
        print(json.dumps({"type": "result", "total_cost_usd": float(sys.argv[2])}), flush=True)
        time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)
        sys.exit(0)
    if mode == "env":  # record the environment the session got, in env.json, and commit nothing
        with open("env.json.tmp", "w") as f:
            json.dump(dict(os.environ), f)
        os.replace("env.json.tmp", "env.json")
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
        sys.exit(0)
    if mode == "silent":
        with open("work-in-progress.txt", "w") as f:
            f.write("half done\\n")
        print(f"{agent} calling the model...", flush=True)
        time.sleep(float(sys.argv[2]))
        sys.exit(0)
    if mode == "chatty":
        end = time.time() + float(sys.argv[2])
        while time.time() < end:
            print(f"{agent} working at {time.time():.1f}", flush=True)
            time.sleep(0.2)
        sys.exit(0)
    if mode == "until":  # print a line, then wait for the file argv[2] to exist; exit 0 (the test says when)
        print(f"{agent} waiting for {sys.argv[2]}", flush=True)
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.05)
        print(f"{agent} done", flush=True)
        sys.exit(0)
    sys.exit(f"unknown mode {mode}")
''')


def install(where: Path) -> Path:
    path = where / "scripted_agent.py"
    path.write_text(SCRIPT)
    return path


def argv(script: Path, *args: str) -> str:
    """A YAML flow list for `command:`."""
    return json.dumps([sys.executable, str(script), *args])


def fleet_yaml(repo: Path, agents: str, *, spec: str = "", name: str = "t") -> Path:
    """Write `repo`/fleet.yaml: fleet `name` with the one tier `local` (runtime command), the
    `spec` keys given (YAML, indented as you like: it is dedented, then placed under spec:) and
    `agents` (YAML list items, the same) under spec.agents. Returns the file's path."""
    def under(text: str, indent: str) -> str:
        body = textwrap.dedent(text).strip("\n")
        return "".join(f"{indent}{line}\n" if line else "\n" for line in body.splitlines()) if body else ""

    path = repo / "fleet.yaml"
    path.write_text(HEADER.format(name=name) + under(spec, "  ") + "  agents:\n" + under(agents, "    "))
    return path


def for_each(repo: Path, *args: str, items: str = "a00, a01", name: str = "t") -> Path:
    """`fleet_yaml` with one agent `w-{item}` per item of `items` (a YAML flow list's inside, kept
    as written: tests edit the file by replacing "[a00, a01]"), each running the scripted agent
    (installed beside `repo`) with `args`."""
    script = install(repo.parent)
    return fleet_yaml(repo, f"""
        - name: w-{{item}}
          forEach: {{items: [{items}]}}
          tier: local
          command: {argv(script, *args)}
    """, name=name)
