"""`fleet logs` renders real session logs: the claude and codex CLIs' JSON events as a person reads them.

The event logs are made here, by the real CLIs (claude `-p --output-format stream-json
--verbose`, `codex exec --json`) against tests/model_server.py on 127.0.0.1, run by fleet
as sessions of its claude and codex runtimes, so each log is exactly what fleet keeps:
run markers, the CLI's lines, gate runs, a resume. `-f` is followed across that resume in
a real subprocess. Shapes the scripted server cannot make a CLI print (codex file changes,
a failed tool) are rendered from hand-written events in the table at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT, fleet_in_process, session_pids, status_in_process, wait_until, write_fleet
from model_server import ModelServer, Reply, Request, Text, ToolUse, play, workdir
from test_claude_e2e import CLAUDE, MODEL
from test_codex_e2e import CODEX

from reconciler.render.session_log import SessionLogRenderer, render_text

needs_claude = pytest.mark.skipif(CLAUDE is None,
                                  reason="the real Claude Code CLI is not installed (see test_claude_e2e)")
needs_codex = pytest.mark.skipif(CODEX is None, reason="the real Codex CLI is not installed (see test_codex_e2e)")

GATE = "grep -q good answer.txt || { echo 'expected good, got:'; cat answer.txt; exit 1; }"
IDENT = "git -c user.name=agent -c user.email=agent@fleet.invalid"


@pytest.fixture
def model(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[Request], Reply]], ModelServer]]:
    """A scripted model server that both CLIs (and so fleet's sessions) talk to, and nothing else."""
    servers: list[ModelServer] = []

    def start(script: Callable[[Request], Reply]) -> ModelServer:
        server = ModelServer(script).__enter__()
        servers.append(server)
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        for key in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR", "IS_SANDBOX",
                    "OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(key, raising=False)
        codex_home = home / ".codex"
        codex_home.mkdir(exist_ok=True)
        (codex_home / "config.toml").write_text(
            f'model_provider = "scripted"\n[model_providers.scripted]\nname = "scripted"\n'
            f'base_url = "{server.url}/v1"\nwire_api = "responses"\nenv_key = "SCRIPTED_API_KEY"\n'
            'request_max_retries = 0\nstream_max_retries = 0\n')
        monkeypatch.setenv("CODEX_HOME", str(codex_home))
        monkeypatch.setenv("SCRIPTED_API_KEY", "test-key")
        for cli in filter(None, (CLAUDE, CODEX)):
            monkeypatch.setenv("PATH", str(Path(cli).parent) + os.pathsep + os.environ["PATH"])
        return server

    yield start
    for server in servers:
        server.close()


CLAUDE_TIER = f"{{runtime: claude, model: {MODEL}, args: [--allowedTools, Bash, Write, Edit]}}"
CODEX_TIER = "{runtime: codex, model: gpt-5-mini, args: [-s, danger-full-access]}"


def gated_fleet(repo: Path, tier: str) -> None:
    """One agent, run by fleet's own runtime adapter, with a gate it fails the first time."""
    write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers: {{worker: {tier}}}
          gates:
            answer: {{run: {json.dumps(GATE)}, timeout: 30s, maxAttempts: 3}}
          agents:
            - name: solver
              tier: worker
              prompt: Put the answer in answer.txt and commit.
              gates: [answer]
    """)


def apply_and_wait(repo: Path) -> None:
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(lambda: not session_pids(repo), timeout=120)


def claude_script(req: Request) -> Reply:
    answer = str(Path(workdir(req) or ".") / "answer.txt")
    if "quality gate `answer` failed" in req.prompt():
        return play(req, ToolUse("Edit", {"file_path": answer, "old_string": "bad", "new_string": "good"}),
                    ToolUse("Bash", {"command": f"{IDENT} commit -q -am fix", "description": "commit"}),
                    Text("Fixed: the answer is good now."))
    return play(req, ToolUse("Write", {"file_path": answer, "content": "bad\n"}, text="I will write the answer."),
                ToolUse("Bash", {"command": f"git add answer.txt && {IDENT} commit -q -m answer && git log --oneline",
                                 "description": "commit"}),
                Text("Committed the answer."))


@needs_claude
def test_a_claude_stream_json_log_reads_as_messages_tool_calls_gates_and_a_resume(repo: Path, model) -> None:
    model(claude_script)
    gated_fleet(repo, CLAUDE_TIER)
    for _ in range(3):  # the run, its gate (fails) and the resume, the gate again (passes)
        apply_and_wait(repo)
    row = status_in_process(repo)["solver"]
    assert (row["phase"], row["attempts"]) == ("Succeeded", 2), row
    shown = fleet_in_process("logs", "solver", cwd=repo, check=True).stdout
    lines = shown.splitlines()
    wt = row["worktree"]
    expected = [  # in this order, each the start of a line
        "──── start ", f"session {row['session_id']} · model {MODEL} · cwd {wt}",
        "● I will write the answer.", f"✎ write {wt}/answer.txt", "  ⎿ created, 1 line(s)",
        "$ git add answer.txt && ", "  ⎿ ",  # the commit's `git log --oneline`: its sha and subject
        "● Committed the answer.", "✓ result: success · 3 turn(s) · $",
        "▶ gate answer FAILED: ", "  │ expected good, got:", "  │ bad",
        "──── resume ", f"session {row['session_id']}",
        f"✎ edit {wt}/answer.txt", "  ⎿ +1 -1", f"$ {IDENT} commit -q -am fix", "  ⎿ (no output)",
        "● Fixed: the answer is good now.", "✓ result: success · ",
        "▶ gate answer passed: ",
    ]
    at = 0
    for want in expected:
        found = next((i for i in range(at, len(lines)) if lines[i].startswith(want)), None)
        assert found is not None, f"{want!r} not found after line {at}:\n{shown}"
        at = found + 1
    assert "answer" in lines[lines.index(next(x for x in lines if x.startswith("$ git add"))) + 1]
    assert not [x for x in lines if x.startswith('{"type"')]  # every event was rendered
    raw = fleet_in_process("logs", "solver", "--raw", cwd=repo, check=True).stdout
    log = next((repo / ".git" / "fleet" / "logs" / "t").glob("solver.log")).read_text()
    assert raw == log and '"type":"assistant"' in raw
    # describe's log tail is the same rendering
    tail = fleet_in_process("describe", "solver", cwd=repo, check=True).stdout.split("Log tail:")[1]
    assert "  ● Fixed: the answer is good now.\n" in tail and "  ▶ gate answer passed: " in tail


@needs_claude
def test_logs_follow_a_claude_session_across_its_resume_until_nothing_more_is_coming(repo: Path, model) -> None:
    model(claude_script)
    gated_fleet(repo, CLAUDE_TIER)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    follower = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "logs", "solver", "-f"], cwd=repo,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
    try:
        wait_until(lambda: not session_pids(repo), timeout=120)
        assert follower.poll() is None  # the run ended, but its gate is still to run: it waits
        apply_and_wait(repo)  # the gate fails, the session is resumed with its output
        apply_and_wait(repo)  # the gate passes: Succeeded, nothing more coming
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    heads = [x for x in out.splitlines() if x.startswith(("──── ", "▶ gate", "✓ result"))]
    wanted = ["──── start ", "✓ result: success · 3 turn(s) · $", "▶ gate answer FAILED: ",
              "──── resume ", "✓ result: success · 3 turn(s) · $", "▶ gate answer passed: "]
    assert len(heads) == len(wanted) and all(h.startswith(w) for h, w in zip(heads, wanted, strict=True)), heads


def codex_script(req: Request) -> Reply:
    if "quality gate `answer` failed" in req.prompt():
        return play(req, ToolUse("Bash", {"command": f"echo good > answer.txt && {IDENT} commit -qam fix"}),
                    Text("fixed it"))
    return play(req, ToolUse("Bash", {"command": f"echo bad > answer.txt && git add answer.txt && "
                                                 f"{IDENT} commit -qm answer && echo committed"}),
                ToolUse("Bash", {"command": "cat no-such-file"}),
                Text("done"))


@needs_codex
def test_a_codex_json_log_reads_as_commands_with_exit_codes_messages_and_turns(repo: Path, model) -> None:
    model(codex_script)
    gated_fleet(repo, CODEX_TIER)
    for _ in range(3):
        apply_and_wait(repo)
    row = status_in_process(repo)["solver"]
    assert (row["phase"], row["attempts"]) == ("Succeeded", 2), row
    lines = fleet_in_process("logs", "solver", cwd=repo, check=True).stdout.splitlines()
    expected = ["──── start ", "thread ", "$ echo bad > answer.txt && git add answer.txt", "  ⎿ exit 0: committed",
                "$ cat no-such-file", "  ⎿ exit 1: cat: no-such-file: No such file or directory", "● done",
                "✓ turn completed · ", "▶ gate answer FAILED: ", "  │ bad", "──── resume ",
                "$ echo good > answer.txt", "  ⎿ exit 0", "● fixed it", "✓ turn completed · ",
                "▶ gate answer passed: "]
    at = 0
    for want in expected:
        found = next((i for i in range(at, len(lines)) if lines[i].startswith(want)), None)
        assert found is not None, f"{want!r} not found after line {at}:\n" + "\n".join(lines)
        at = found + 1
    assert not [x for x in lines if x.startswith('{"type"')]


def test_logs_all_follow_prefixes_every_agents_lines_with_its_name(repo: Path) -> None:
    shutil.copy(ROOT / "fleets" / "demo.yaml", repo / "fleet.yaml")
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)  # two run, the third waits for a slot
    follower = subprocess.run([sys.executable, "-m", "reconciler.cli.main", "logs", "--all", "-f"], cwd=repo,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
                              check=False)
    assert follower.returncode == 0, follower.stderr
    lines = follower.stdout.splitlines()
    # each agent's own lines, in its order, under its prefix (the names padded to one width)
    for name in ("notes-parser", "notes-storage"):
        mine = [x.split(" | ", 1)[1] for x in lines if x.startswith(f"{name:<13} | ")]
        assert mine[0].startswith("──── start ") and mine[-1] == "✓ result: done · $0.0000", mine
        assert [x.split(":")[0] for x in mine if x.startswith(f"[{name}] step")] == [
            f"[{name}] step {i}/3" for i in (1, 2, 3)]
        assert f"● committed NOTES/{name}.md" in mine
    assert all(x.startswith(("notes-parser  | ", "notes-storage | ")) for x in lines), lines


def test_logs_all_without_a_log_yet_says_so(repo: Path) -> None:
    shutil.copy(ROOT / "fleets" / "demo.yaml", repo / "fleet.yaml")
    proc = fleet_in_process("logs", "--all", cwd=repo)
    assert proc.returncode == 1 and "no agent of fleet demo has a log yet" in proc.stderr


def _plain(lines: list[str]) -> list[str]:
    renderer = SessionLogRenderer()
    return [t.plain for line in lines for t in renderer.feed(line)]


@pytest.mark.parametrize(("events", "shown"), [
    # codex 0.169 file_change and a failed command that never got an item.started line
    ([{"type": "item.completed", "item": {"id": "i", "type": "file_change", "status": "completed",
                                          "changes": [{"path": "src/a.py", "kind": "update"},
                                                      {"path": "b.txt", "kind": "add"}]}}],
     ["✎ update src/a.py", "✎ add b.txt"]),
    ([{"type": "item.completed", "item": {"id": "c", "type": "command_execution", "command": "bash -lc 'make'",
                                          "aggregated_output": "1\n2\n3\n4\n5\n", "exit_code": 2,
                                          "status": "failed"}}],
     ["$ make", "  ⎿ exit 2: 1", "    2", "    3", "    … 2 more line(s)"]),
    ([{"type": "turn.failed", "error": {"message": "stream disconnected"}}], ["✗ turn failed: stream disconnected"]),
    # claude: a tool that failed, a result that is an error
    ([{"type": "assistant", "message": {"content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                                     "input": {"file_path": "/x"}}]}},
      {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                                "content": "File does not exist."}]}}],
     ["⚙ read /x", "  ⎿ ✗ File does not exist."]),
    ([{"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 9, "total_cost_usd": 1.5,
       "errors": ["max turns reached"]}],
     ["✗ result: error_max_turns · 9 turn(s) · $1.5000: max turns reached"]),
])
def test_event_shapes_the_scripted_server_cannot_make(events: list[dict], shown: list[str]) -> None:
    assert _plain([json.dumps(e) for e in events]) == shown


def test_plain_lines_and_other_json_are_shown_as_they_are() -> None:
    lines = ["warning: something", '{"not": "an event"}', '{"type": "custom.thing"}', "[1, 2]"]
    assert _plain(lines) == lines
    assert [t.plain for t in render_text("--- fleet: start T: a\n--- fleet: start T: b\n")] == [
        "──── start T ────", "  a", "──── restart T ────", "  b"]


def test_ctrl_c_ends_a_follow_with_exit_0(repo: Path) -> None:
    write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          agents:
            - name: sleeper
              tier: local
              command: [sh, -c, "echo started; exec sleep 300"]
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    # PYTHONFAULTHANDLER: a follower that does not end is made to say where it is (SIGABRT below)
    follower = subprocess.Popen([sys.executable, "-m", "reconciler.cli.main", "logs", "sleeper", "-f"], cwd=repo,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"},
                                # as a terminal's Ctrl-C finds it: a suite started in the background
                                # (`cmd &`) ignores SIGINT, and Python then keeps it ignored
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().startswith("──── start ")  # following: the session runs on
        follower.send_signal(signal.SIGINT)
        try:
            code = follower.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # seen twice under the full suite, never alone: what its signal state and threads were
            sig = [line for line in Path(f"/proc/{follower.pid}/status").read_text().splitlines()
                   if line.startswith(("State", "Sig", "Shd"))]
            follower.send_signal(signal.SIGABRT)
            _, err = follower.communicate(timeout=30)
            raise AssertionError("the follow did not end on SIGINT\n" + "\n".join(sig) + "\n" + err) from None
        assert code == 0
    finally:
        if follower.poll() is None:
            follower.kill()
