"""A scripted offline agent: edits a file in its worktree and commits it.

Run as `python -m reconciler.agents.demo` by the `command` runtime. It reads its task
from FLEET_PROMPT and its name from FLEET_AGENT, works a little (DEMO_STEPS lines,
DEMO_DELAY seconds apart, so progress is visible in `fleet logs -f`), commits, and
prints a result line with a cost of 0 so `fleet status` has something to sum.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    agent = os.environ.get("FLEET_AGENT", "demo")
    prompt = os.environ.get("FLEET_PROMPT", "")
    steps = int(os.environ.get("DEMO_STEPS", "3"))
    delay = float(os.environ.get("DEMO_DELAY", "0.5"))
    notes = Path("NOTES") / f"{agent}.md"
    notes.parent.mkdir(exist_ok=True)
    lines = [f"# {agent}", "", f"Task: {prompt.strip()}", ""]
    for step in range(1, steps + 1):
        print(f"[{agent}] step {step}/{steps}: thinking about {prompt.strip()[:40]!r}", flush=True)
        lines.append(f"- finding {step}: looked at step {step}")
        time.sleep(delay)
    notes.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _git("add", str(notes))
    _git("commit", "-q", "-m", f"{agent}: notes on the task")
    print(json.dumps({"type": "result", "session_id": None, "total_cost_usd": 0.0,
                      "is_error": False, "result": f"committed {notes}"}), flush=True)
    return 0


def _git(*args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "fleet demo agent"),
           "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "demo-agent@fleet.invalid"),
           "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "fleet demo agent"),
           "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "demo-agent@fleet.invalid")}
    subprocess.run(["git", *args], check=True, env=env)


if __name__ == "__main__":
    sys.exit(main())
