"""End to end with the real Codex CLI against the scripted model server's Responses endpoint.

codex reads a custom provider from $CODEX_HOME/config.toml (default ~/.codex; each test
has its own HOME), so `codex exec --json` runs complete turns, shell calls included,
against tests/model_server.py with no network. The binary is found in $FLEET_TEST_CODEX,
else the project-local install `.ci/run` makes (.ci/codex/node_modules/.bin/codex), else
on PATH; the test skips, saying how to install it, only when none works.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT, fleet_in_process, git, session_pids, status_in_process, wait_until, write_fleet
from model_server import ModelServer, Reply, Request, Text, ToolUse, play

PINNED = "0.169.0"
INSTALL = f"npm install --prefix .ci/codex @openai/codex@{PINNED}"
MODEL = "gpt-5-mini"


def _find_codex() -> tuple[str | None, str]:
    last = "not found"
    for path in filter(None, [os.environ.get("FLEET_TEST_CODEX"), str(ROOT / ".ci/codex/node_modules/.bin/codex"),
                              shutil.which("codex")]):
        try:
            out = subprocess.run([path, "--version"], check=False, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            last = f"{path}: {exc}"
            continue
        if out.returncode == 0:
            return path, out.stdout.strip()
        last = f"{path} --version exited {out.returncode}: {out.stderr.strip()[:200]}"
    return None, last


CODEX, CODEX_VERSION = _find_codex()
pytestmark = pytest.mark.skipif(
    CODEX is None, reason=f"the real Codex CLI is not installed ({CODEX_VERSION}); "
                          f"run `{INSTALL}` (as .ci/run does) or set FLEET_TEST_CODEX=/path/to/codex")


@pytest.fixture
def serve(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[Request], Reply]], ModelServer]]:
    servers: list[ModelServer] = []

    def start(script: Callable[[Request], Reply]) -> ModelServer:
        server = ModelServer(script).__enter__()
        servers.append(server)
        codex_home = home / ".codex"
        codex_home.mkdir(exist_ok=True)
        (codex_home / "config.toml").write_text(f'''
model_provider = "scripted"
[model_providers.scripted]
name = "scripted model server"
base_url = "{server.url}/v1"
wire_api = "responses"
env_key = "SCRIPTED_API_KEY"
request_max_retries = 0
stream_max_retries = 0
''')
        monkeypatch.setenv("CODEX_HOME", str(codex_home))
        monkeypatch.setenv("SCRIPTED_API_KEY", "test-key")
        for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        assert CODEX is not None
        monkeypatch.setenv("PATH", str(Path(CODEX).parent) + os.pathsep + os.environ["PATH"])
        return server

    yield start
    for server in servers:
        server.close()


def converge(repo: Path, done: Callable[[dict[str, dict]], bool], rounds: int = 8) -> dict[str, dict]:
    """apply, let the sessions it started finish, repeat until `done(status)`."""
    rows: dict[str, dict] = {}
    for _ in range(rounds):
        proc = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wait_until(lambda: not session_pids(repo), timeout=60)
        rows = status_in_process(repo)
        if done(rows):
            return rows
    raise AssertionError(f"not done after {rounds} applies: {rows}")


def test_codex_commits_and_a_failed_gate_resumes_its_thread(repo: Path, serve) -> None:
    ident = "git -c user.name=codex -c user.email=codex@fleet.invalid"

    def script(req: Request) -> Reply:
        if "quality gate `answer` failed" in req.prompt():
            return play(req, ToolUse("Bash", {"command": f"echo good > answer.txt && {ident} commit -qam fix"}),
                        Text("fixed"))
        return play(req, ToolUse("Bash", {"command": f"echo bad > answer.txt && git add answer.txt && "
                                                     f"{ident} commit -qm answer"}),
                    Text("done"))

    server = serve(script)
    gate = "grep -q good answer.txt || { echo 'expected good, got:'; cat answer.txt; exit 1; }"
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers:
            cheap: {{runtime: codex, model: {MODEL}, args: [-s, danger-full-access]}}
          gates:
            answer: {{run: {json.dumps(gate)}, timeout: 30s, maxAttempts: 3}}
          agents:
            - name: solver
              tier: cheap
              prompt: Put the answer in answer.txt and commit.
              gates: [answer]
    """)
    rows = converge(repo, lambda r: r["solver"]["phase"] in ("Succeeded", "Failed") and not r["solver"]["reason"])
    row = rows["solver"]
    assert row["phase"] == "Succeeded" and row["attempts"] == 2, row
    wt = Path(row["worktree"])
    assert (wt / "answer.txt").read_text() == "good\n"
    assert git(wt, "log", "--format=%s", "main..").split() == ["fix", "answer"]
    main = server.main_requests()
    assert {r.model for r in main} == {MODEL}
    thread = row["session_id"]  # codex's own thread id, read from `thread.started`
    assert {r.session_id for r in main} == {thread}
    resumed = [r for r in main if "quality gate `answer` failed" in r.prompt()]
    assert resumed and "expected good, got:" in resumed[0].prompt()
    assert "git add answer.txt" in resumed[0].all_text()  # the earlier turn is in the resumed thread
    log = fleet_in_process("logs", "fleet.yaml", "solver", "--raw", cwd=repo, check=True).stdout
    assert f"codex exec --json -m {MODEL} -C {wt} -s danger-full-access -- Put the answer" in log
    assert f'codex exec resume --json -m {MODEL} -c sandbox_mode="danger-full-access" -- {thread} ' in log
    # codex reports tokens, not cost: fleet prices the thread's last running total with the tier's
    # model (gpt-5-mini: $0.25/M input, $0.025/M cached, $2/M output; docs/operations.md "Spend")
    totals = [json.loads(line)["usage"] for line in log.splitlines() if line.startswith('{"type":"turn.completed"')]
    last = totals[-1]
    cached = last.get("cached_input_tokens", 0)
    priced = ((last["input_tokens"] - cached) * 0.25 + cached * 0.025 + last["output_tokens"] * 2) / 1e6
    assert len(totals) == 2 and row["cost_usd"] == pytest.approx(priced) and priced > 0
