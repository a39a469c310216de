#!/usr/bin/env python3
"""Take the screenshots in docs/img/ of `fleet ui`, from a real fleet in a throwaway repo.

    PYTHONPATH=. .venv/bin/python scripts/dashboard_screenshots.py   # writes docs/img/dashboard-*.png

Six scripted `command` agents on two tiers with caps and budgets: two finish (one with a
cost), one keeps working and logging, one crashes (Needs attention), two wait for a slot.
`fleet reconcile --watch --ui` runs a few ticks, so the charts have history, and headless
Chromium (as in tests/test_dashboard.py) takes the fleet page and one agent's page (one that committed its
work and waits for approval in the merge queue: its review packet shows).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import agents  # noqa: E402  (tests/agents.py: the scripted agents)
from browser import FLAGS, chromium_paths  # noqa: E402

OUT = ROOT / "docs" / "img"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    work = Path(tempfile.mkdtemp(prefix="fleet-shots-"))
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(work / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
           "PYTHONPATH": str(ROOT)}
    (work / "gitconfig").write_text("[user]\n\tname = demo\n\temail = demo@fleet.invalid\n")
    os.environ.update(env)
    repo = work / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# notes service\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "initial commit")
    script = agents.install(work)
    a = lambda *args: agents.argv(script, *args)  # noqa: E731
    (repo / "fleet.yaml").write_text(f"""apiVersion: fleet/v1alpha1
kind: Fleet
metadata: {{name: notes}}
spec:
  tiers:
    fast: {{runtime: command, maxRunning: 2}}
    careful: {{runtime: command, maxRunning: 2}}
  concurrency: {{maxRunning: 4}}
  budget: {{usdPerDay: 5, perTier: {{fast: 2, careful: 4}}}}
  restartBackoff: {{initial: 1h}}
  gates: {{tests: {{run: "true", timeout: 30s}}}}
  delivery: {{into: integration, gates: [tests], approval: required}}
  agents:
    - {{name: notes-parser, tier: careful, command: {a("cost", "0.84", "4")}}}
    - {{name: notes-storage, tier: fast, command: {a("commit", "3")}}}
    - {{name: notes-api, tier: careful, command: {a("chatty", "600")}, prompt: "Build the notes REST API"}}
    - {{name: notes-docs, tier: fast, restart: OnFailure, command: {a("crash", "3")}}}
    - {{name: notes-search, tier: fast, command: {a("sleep", "600")}}}
    - {{name: notes-export, tier: fast, command: {a("sleep", "600")}}}
""")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the notes fleet")
    loop = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "reconcile", "fleet.yaml", "--watch",
                             "--interval", "1", "--ui", "--port", "0"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert loop.stdout is not None
        url = loop.stdout.readline().split(": ", 1)[1].strip()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url + "api/fleet", timeout=30) as resp:
                data = json.loads(resp.read())
            if len(data["history"]) >= 12 and data["groups"]["Done"]:
                break
            time.sleep(1)
        chromium, driver_path = chromium_paths()
        options = Options()
        options.binary_location = chromium
        for flag in (*FLAGS, f"--user-data-dir={work / 'profile'}"):
            options.add_argument(flag.replace("1280,1000", "1400,1500"))
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            OUT.mkdir(parents=True, exist_ok=True)
            driver.get(url)
            time.sleep(2)
            driver.save_screenshot(str(OUT / "dashboard-fleet.png"))
            driver.get(url + "agents/notes-storage")
            time.sleep(3)
            driver.save_screenshot(str(OUT / "dashboard-agent.png"))
        finally:
            driver.quit()
        print(f"wrote {OUT / 'dashboard-fleet.png'} and {OUT / 'dashboard-agent.png'}")
    finally:
        os.killpg(loop.pid, signal.SIGTERM)
        loop.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "reconciler.cli.main", "delete", "fleet.yaml", "--yes", "--grace", "1"],
                       cwd=repo, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
