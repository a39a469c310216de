"""End to end with the real Claude Code CLI against a scripted model server (tests/model_server.py).

Everything goes through `fleet apply` / `fleet status` as a user runs them: real worktrees,
detached sessions, the real `claude` binary doing real tool calls (Bash, Write, Edit)
in its worktree. The binary is found in $FLEET_TEST_CLAUDE, else the project-local
install `.ci/run` makes (.ci/claude/node_modules/.bin/claude), else on PATH. The tests
skip, saying how to install it, only when no working binary is found.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT, fleet_in_process, git, session_pids, status_in_process, wait_until, write_fleet
from model_server import (
    OVERLOADED,
    UNAUTHORIZED,
    Error,
    ModelServer,
    Reply,
    Request,
    Stall,
    Text,
    ToolUse,
    Usage,
    play,
    workdir,
)

PINNED = "2.1.332"
INSTALL = f"npm install --prefix .ci/claude @anthropic-ai/claude-code@{PINNED}"
MODEL = "claude-sonnet-4-5-20250929"  # a full model id: the CLI prices it, and sends it as is


def _find_claude() -> tuple[str | None, str]:
    """(path, version) of the first claude whose `--version` works, else (None, why not)."""
    last = "not found"
    candidates = [os.environ.get("FLEET_TEST_CLAUDE"), str(ROOT / ".ci/claude/node_modules/.bin/claude"),
                  shutil.which("claude")]
    for path in filter(None, candidates):
        try:
            out = subprocess.run([path, "--version"], check=False, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            last = f"{path}: {exc}"
            continue
        if out.returncode == 0:
            return path, out.stdout.strip()
        last = f"{path} --version exited {out.returncode}: {out.stderr.strip()[:200]}"
    return None, last


CLAUDE, CLAUDE_VERSION = _find_claude()
pytestmark = pytest.mark.skipif(
    CLAUDE is None, reason=f"the real Claude Code CLI is not installed ({CLAUDE_VERSION}); "
                           f"run `{INSTALL}` (as .ci/run does) or set FLEET_TEST_CLAUDE=/path/to/claude")


@pytest.fixture
def serve(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[Request], Reply]], ModelServer]]:
    """Start a model server playing `script`; fleet and its claude sessions talk only to it."""
    servers: list[ModelServer] = []

    def start(script: Callable[[Request], Reply]) -> ModelServer:
        server = ModelServer(script).__enter__()
        servers.append(server)
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        for key in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR", "IS_SANDBOX",
                    "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(key, raising=False)
        assert CLAUDE is not None
        monkeypatch.setenv("PATH", str(Path(CLAUDE).parent) + os.pathsep + os.environ["PATH"])
        return server

    yield start
    for server in servers:
        server.close()


def claude_fleet(repo: Path, agents: str, *, extra: str = "", backoff: str = "1s") -> Path:
    """A fleet whose `worker` tier runs claude with the model MODEL, tools allowed as a root user can."""
    return write_fleet(repo, f"""
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {{name: t}}
        spec:
          tiers:
            worker: {{runtime: claude, model: {MODEL}, args: [--allowedTools, Bash, Write, Edit]}}
          restartBackoff: {{initial: {backoff}}}
        {extra}
          agents:
        {agents}
    """)


def apply(repo: Path) -> None:
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def converge(repo: Path, done: Callable[[dict[str, dict]], bool], rounds: int = 8) -> dict[str, dict]:
    """apply, let the sessions it started finish, repeat until `done(status)`: one apply per step
    of the fleet's life (spawn, fold results and run gates, resume, ...), no polling of the CLI."""
    rows: dict[str, dict] = {}
    for _ in range(rounds):
        apply(repo)
        wait_until(lambda: not session_pids(repo), timeout=60)
        rows = status_in_process(repo)
        if done(rows):
            return rows
    raise AssertionError(f"not done after {rounds} applies: {rows}")


def apply_until(repo: Path, done: Callable[[dict[str, dict]], bool], timeout: float = 60) -> dict[str, dict]:
    """apply repeatedly while sessions run (for what only a later pass notices: stalls)."""
    def step() -> dict[str, dict] | None:
        apply(repo)
        rows = status_in_process(repo)
        return rows if done(rows) else None

    return wait_until(step, timeout=timeout, interval=0.3)


def results(repo: Path, agent: str) -> list[dict]:
    """Every result object claude printed in the agent's session log."""
    log = fleet_in_process("logs", "fleet.yaml", agent, "--raw", cwd=repo, check=True).stdout
    found = []
    for line in log.splitlines():
        if line.startswith("{") and '"type":"result"' in line:
            found.append(json.loads(line))
    return found


def commit(name: str) -> str:
    return (f"echo {name} > {name}.txt && git add {name}.txt && "
            f"git -c user.name=claude -c user.email=claude@fleet.invalid commit -q -m '{name} by claude'")


def test_three_claude_agents_edit_and_commit_in_their_own_worktrees(repo: Path, serve) -> None:
    usage = Usage(input_tokens=10_000, output_tokens=1_000)

    def script(req: Request) -> Reply:
        name = re.search(r"Write (\S+)\.txt", req.prompt()).group(1)  # type: ignore[union-attr]
        return play(req, ToolUse("Bash", {"command": commit(name), "description": "commit"}, usage=usage),
                    Text(f"committed {name}.txt", usage))

    server = serve(script)
    claude_fleet(repo, """
            - name: w-{item}
              forEach: {items: [a, b, c]}
              tier: worker
              prompt: Write {item}.txt and commit it.
    """)
    rows = converge(repo, lambda r: all(r[f"w-{x}"]["phase"] in ("Succeeded", "Failed") for x in "abc"))
    report = json.loads(fleet_in_process("status", "fleet.yaml", "-o", "json", cwd=repo, check=True).stdout)
    total = 0.0
    for x in "abc":
        row = rows[f"w-{x}"]
        assert row["phase"] == "Succeeded", row
        assert row["model"] == MODEL and row["runtime"] == "claude"
        assert row["ahead"] == 1 and row["dirty"] == 0  # claude left nothing behind in the worktree
        wt = Path(row["worktree"])
        assert (wt / f"{x}.txt").read_text() == f"{x}\n"
        assert git(wt, "log", "-1", "--format=%s").strip() == f"{x} by claude"
        (result,) = results(repo, f"w-{x}")
        assert result["is_error"] is False and result["session_id"] == row["session_id"]
        assert result["num_turns"] == 2 and result["total_cost_usd"] > 0
        assert row["cost_usd"] == pytest.approx(result["total_cost_usd"])
        total += result["total_cost_usd"]
    assert report["spendTodayUsd"] == pytest.approx(total)
    main = server.main_requests()
    assert len(main) == 6 and {r.model for r in main} == {MODEL}
    assert {r.session_id for r in main} == {rows[f"w-{x}"]["session_id"] for x in "abc"}
    assert not server.unknown, [(r.method, r.path) for r in server.unknown]
    # the CLI ran in each agent's worktree, with fleet's prompt
    assert {workdir(r) for r in main} == {rows[f"w-{x}"]["worktree"] for x in "abc"}


def test_failed_gate_resumes_the_same_claude_session_with_the_gate_output(repo: Path, serve) -> None:
    def script(req: Request) -> Reply:
        answer = str(Path(workdir(req) or ".") / "answer.txt")
        if "quality gate `answer` failed" in req.prompt():
            return play(req, ToolUse("Edit", {"file_path": answer, "old_string": "bad", "new_string": "good"}),
                        ToolUse("Bash", {"command": "git commit -q -am fix", "description": "commit"}),
                        Text("fixed"))
        return play(req, ToolUse("Write", {"file_path": answer, "content": "bad\n"}),
                    ToolUse("Bash", {"command": "git add answer.txt && git commit -q -m answer",
                                     "description": "commit"}),
                    Text("done"))

    server = serve(script)
    gate = "grep -q good answer.txt || { echo 'expected good, got:'; cat answer.txt; exit 1; }"
    claude_fleet(repo, """
            - name: solver
              tier: worker
              prompt: Put the answer in answer.txt and commit.
              gates: [answer]
    """, extra=f"""  gates:
            answer: {{run: {json.dumps(gate)}, timeout: 30s, maxAttempts: 3}}""")
    rows = converge(repo, lambda r: r["solver"]["phase"] in ("Succeeded", "Failed") and not r["solver"]["reason"])
    row = rows["solver"]
    assert row["phase"] == "Succeeded" and row["attempts"] == 2, row
    assert {c["type"]: c["status"] for c in row["conditions"]}["GatesPassed"] == "True"
    assert (Path(row["worktree"]) / "answer.txt").read_text() == "good\n"
    main = server.main_requests()
    sessions = {r.session_id for r in main}
    assert sessions == {row["session_id"]}  # one conversation: resumed, not restarted
    resumed = [r for r in main if "quality gate `answer` failed" in r.prompt()]
    assert resumed, "the gate's output never reached the model"
    first = resumed[0]
    assert "expected good, got:" in first.prompt() and "bad" in first.prompt()
    # the resumed request carries the earlier run's history: the task, its Write and commit
    history = first.all_text()
    assert "Put the answer in answer.txt and commit." in history
    assert '"content": "bad\\n"' in history and "git add answer.txt" in history
    log = fleet_in_process("logs", "fleet.yaml", "solver", "--raw", cwd=repo, check=True).stdout
    assert f"-p --resume {row['session_id']} --model {MODEL}" in log
    run_results = results(repo, "solver")
    assert len(run_results) == 2 and run_results[1]["session_id"] == row["session_id"]
    # claude's cost is per conversation: the resumed result already includes the first run
    assert row["cost_usd"] == pytest.approx(run_results[1]["total_cost_usd"])
    assert run_results[1]["total_cost_usd"] > run_results[0]["total_cost_usd"]


def test_session_killed_mid_turn_is_resumed_not_restarted(repo: Path, serve) -> None:
    def script(req: Request) -> Reply:
        if "Your previous run" in req.prompt():
            return Text("finished after the interruption")
        return play(req, ToolUse("Bash", {"command": commit("half"), "description": "commit"}), Stall())

    server = serve(script)
    claude_fleet(repo, """
            - name: solo
              tier: worker
              prompt: Do the work in two steps.
              restart: OnFailure
    """)
    fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo, check=True)
    wait_until(server.stalled.is_set, timeout=60)  # claude ran the tool and now waits on the model
    before = status_in_process(repo)["solo"]
    assert before["phase"] == "Running" and before["pid"]
    os.killpg(before["pid"], signal.SIGKILL)
    wait_until(lambda: not session_pids(repo))
    apply(repo)  # records the loss, backs off
    assert status_in_process(repo)["solo"]["phase"] == "Failed"

    def planned() -> list[dict] | None:
        actions = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)["actions"]
        return actions if actions and actions[0]["kind"] != "wait" else None

    actions = wait_until(planned, timeout=30, interval=0.2)  # after the 1s backoff
    assert [a["kind"] for a in actions] == ["resume"], actions
    rows = converge(repo, lambda r: r["solo"]["phase"] in ("Succeeded", "Failed"))
    row = rows["solo"]
    assert row["phase"] == "Succeeded" and row["attempts"] == 2, row
    assert row["session_id"] == before["session_id"]
    main = server.main_requests()
    assert {r.session_id for r in main} == {before["session_id"]}
    last = main[-1]
    assert "Your previous run" in last.prompt()
    assert "half by claude" in last.all_text()  # the tool call made before the kill is in the history
    assert git(Path(row["worktree"]), "log", "-1", "--format=%s").strip() == "half by claude"


@pytest.mark.parametrize("reply, message", [(UNAUTHORIZED, "API error 401: Invalid API key"),
                                            (OVERLOADED, "API Error: 529 Overloaded")], ids=["401", "529"])
def test_api_error_ends_failed_with_the_api_message_and_backs_off(repo: Path, serve, reply: Error,
                                                                 message: str) -> None:
    server = serve(lambda req: reply)
    claude_fleet(repo, """
            - name: unlucky
              tier: worker
              prompt: Anything.
              env: {CLAUDE_CODE_MAX_RETRIES: "0"}
    """, backoff="1h")
    rows = converge(repo, lambda r: r["unlucky"]["phase"] == "Failed")
    row = rows["unlucky"]
    assert message in row["reason"], row
    assert row["exit_code"] == 1 and row["cost_usd"] == 0
    (result,) = results(repo, "unlucky")
    assert result["is_error"] is True and result["api_error_status"] == reply.status
    calls = len(server.main_requests())
    assert calls >= 1, "claude never reached the server"
    # the next passes back off instead of hammering the API, and say why
    again = fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr
    row = status_in_process(repo)["unlucky"]
    assert row["phase"] == "Failed" and row["pid"] is None and row["attempts"] == 1
    assert "CrashLoopBackOff" in row["reason"] and message in row["reason"], row
    assert any(c["type"] == "CrashLoopBackOff" and c["status"] == "True" for c in row["conditions"])
    table = fleet_in_process("status", "fleet.yaml", cwd=repo, check=True).stdout
    assert message in table
    assert len(server.main_requests()) == calls


def test_budget_from_real_claude_results_stops_further_spawns(repo: Path, serve) -> None:
    # sonnet 4.5 list price: $3/M input, $15/M output -> $0.30 + $0.30 = $0.60 per one-turn session
    server = serve(lambda req: Text("nothing to do", Usage(input_tokens=100_000, output_tokens=20_000)))
    claude_fleet(repo, """
            - name: w-{item}
              forEach: {items: [a, b, c]}
              tier: worker
              prompt: Look at {item}.
    """, extra="""  concurrency: {maxRunning: 1}
          budget: {usdPerDay: 1}""")
    rows = converge(repo, lambda r: r["w-b"]["phase"] == "Succeeded" and "budget" in (r["w-c"]["reason"] or ""))
    assert [rows[n]["phase"] for n in ("w-a", "w-b", "w-c")] == ["Succeeded", "Succeeded", "Pending"]
    costs = [results(repo, n)[0]["total_cost_usd"] for n in ("w-a", "w-b")]
    assert costs[0] == pytest.approx(0.6) and costs[1] == pytest.approx(0.6)
    assert [rows[n]["cost_usd"] for n in ("w-a", "w-b")] == pytest.approx(costs)
    assert rows["w-c"]["pid"] is None and rows["w-c"]["session_id"] is None
    assert "budget.usdPerDay $1.00 reached ($1.20 spent today)" in rows["w-c"]["reason"]
    assert any(c["type"] == "BudgetExhausted" for c in rows["w-c"]["conditions"])
    assert fleet_in_process("apply", "fleet.yaml", "--yes", cwd=repo).returncode == 0
    assert status_in_process(repo)["w-c"]["phase"] == "Pending"
    assert len({r.session_id for r in server.main_requests()}) == 2  # the third never reached the model


# Issue 9 (stallAfter/timeout) with the real CLI: a hung model connection and a retry loop.

def test_model_server_that_never_answers_leads_to_stalled(repo: Path, serve) -> None:
    server = serve(lambda req: Stall())
    claude_fleet(repo, """
            - name: waiting
              tier: worker
              prompt: Anything.
              stallAfter: 3s
    """, backoff="1h")
    apply(repo)
    # the passes that judge the stall come once claude reached the model (its start is slow under load)
    wait_until(server.stalled.is_set, timeout=60)
    rows = apply_until(repo, lambda r: r["waiting"]["phase"] == "Failed")
    row = rows["waiting"]
    assert server.stalled.is_set()
    assert row["reason"].startswith("Stalled"), row
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in row["conditions"])
    assert row["pid"] is None and row["session_id"]
    # its conversation is kept: the restart after the backoff is a resume of the same session
    actions = json.loads(fleet_in_process("diff", "fleet.yaml", "-o", "json", cwd=repo).stdout)["actions"]
    assert [(a["kind"], a["details"].get("then")) for a in actions] == [("wait", "resume")]


def test_retrying_401_is_stopped_as_stalled_with_the_last_api_error(repo: Path, serve) -> None:
    # no CLAUDE_CODE_MAX_RETRIES: claude retries for minutes, printing nothing to its log;
    # each retry only adds an api_error line to its transcript
    server = serve(lambda req: UNAUTHORIZED)
    claude_fleet(repo, """
            - name: locked-out
              tier: worker
              prompt: Anything.
              stallAfter: 3s
    """, backoff="1h")
    apply(repo)
    wait_until(lambda: len(server.main_requests()) >= 2, timeout=60)  # retrying, before any pass judges it
    rows = apply_until(repo, lambda r: r["locked-out"]["phase"] == "Failed", timeout=90)
    row = rows["locked-out"]
    assert len(server.main_requests()) >= 2  # it was retrying, not finished
    assert row["reason"].startswith("Stalled"), row
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in row["conditions"])
    shown = fleet_in_process("status", "fleet.yaml", cwd=repo, check=True).stdout + json.dumps(row)
    # claude's log is empty while it retries; the last API error comes from its transcript
    assert "401" in shown and "invalid x-api-key" in shown, row


def test_conflicted_delivery_resumes_the_claude_session_with_the_files_then_delivers(repo: Path, serve) -> None:
    """Issue 16: two claude agents write the same line; the merge queue lands one, and the other is
    resumed (`--resume`, same conversation) with a message naming the target and the file; it
    merges the target, resolves, commits, and is delivered."""
    ident = "-c user.name=claude -c user.email=claude@fleet.invalid"

    def script(req: Request) -> Reply:
        name = re.search(r"You are (\S+)\.", req.first_user_text()).group(1)  # type: ignore[union-attr]
        if "conflicts with the delivery target integration" in req.prompt():
            fix = (f"git {ident} merge integration; printf 'from k1\\nfrom k2\\n' > shared.txt && "
                   f"git add shared.txt && git {ident} commit -q -m 'resolve shared.txt with integration'")
            return play(req, ToolUse("Bash", {"command": fix, "description": "resolve"}), Text("resolved"))
        write = f"echo 'from {name}' > shared.txt && git add shared.txt && git {ident} commit -q -m '{name}'"
        return play(req, ToolUse("Bash", {"command": write, "description": "write"}), Text(f"{name} done"))

    server = serve(script)
    claude_fleet(repo, """
            - name: k{item}
              forEach: {items: ["1", "2"]}
              tier: worker
              prompt: You are k{item}. Write your name into shared.txt and commit.
    """, extra="""  gates:
            tests: {run: "test -s shared.txt", timeout: 30s}
          delivery: {into: integration, gates: [tests]}""")
    proc = fleet_in_process("apply", "fleet.yaml", "--yes", "--target", "k1", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_until(lambda: not session_pids(repo), timeout=60)
    rows = converge(repo, lambda r: r["k1"]["phase"] == "Delivered" and r["k2"]["phase"] == "Succeeded")
    assert git(repo, "show", "integration:shared.txt") == "from k1\n"
    apply(repo)  # k2 conflicts on shared.txt: recorded, and fed back for a resume
    row = status_in_process(repo)["k2"]
    assert {c["type"]: c["status"] for c in row["conditions"]}["Conflicted"] == "True"
    rows = converge(repo, lambda r: r["k2"]["phase"] == "Delivered")
    assert git(repo, "show", "integration:shared.txt") == "from k1\nfrom k2\n"
    k2 = rows["k2"]["session_id"]
    resumed = [r for r in server.main_requests() if "conflicts with the delivery target integration" in r.prompt()]
    assert resumed and {r.session_id for r in resumed} == {k2}  # the same conversation, resumed
    assert "shared.txt" in resumed[0].prompt() and "git rebase integration" in resumed[0].prompt()
    assert "You are k2." in resumed[0].all_text()  # with its history
    log = fleet_in_process("logs", "fleet.yaml", "k2", cwd=repo, check=True).stdout
    assert f"-p --resume {k2} --model {MODEL}" in log
