"""Runtime adapters: the argv each builds and how each reads its CLI's real output shapes.

Sample outputs are real where the CLI could produce them offline (claude's result
object and codex's JSONL events below were captured from claude 2.1.332 and codex
0.169.0 with no credentials); the rest follow the CLIs' own output code (see
docs/runtimes.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.runtimes import RUNTIME_NAMES, RUNTIMES, UnknownRuntimeError, get_runtime
from reconciler.runtimes.aider import AiderRuntime
from reconciler.runtimes.base import SessionRequest
from reconciler.runtimes.claude import ClaudeRuntime
from reconciler.runtimes.codex import CodexRuntime
from reconciler.runtimes.command import CommandRuntime
from reconciler.runtimes.gemini import GeminiRuntime

UUID = "3f0e8a52-9a57-4c43-9d2e-5a1f7c0b6a11"
WORKDIR = Path("/repo/.fleet/worktrees/audit-login")


def request(**overrides: object) -> SessionRequest:
    fields: dict[str, object] = dict(agent="audit-login", workdir=WORKDIR, prompt="Audit login.py",
                                     session_id=UUID, model="sonnet", args=())
    fields.update(overrides)
    return SessionRequest(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- registry

def test_registry_has_every_runtime_under_its_own_name() -> None:
    assert tuple(RUNTIMES) == RUNTIME_NAMES == ("claude", "codex", "gemini", "aider", "command")
    for name in RUNTIME_NAMES:
        assert get_runtime(name).name == name


def test_unknown_runtime_error_names_the_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        get_runtime("cursor")
    assert isinstance(info.value, UnknownRuntimeError)
    assert "unknown runtime 'cursor'" in str(info.value)
    assert "claude, codex, gemini, aider, command" in str(info.value)


def test_conversational_clis_and_command_resume_aider_restarts() -> None:
    assert {n for n, rt in RUNTIMES.items() if rt.can_resume} == {"claude", "codex", "gemini", "command"}
    assert get_runtime("aider").resume_argv(request(command=("x",)), "go on") is None
    # command re-runs its argv; the message reaches it as FLEET_MESSAGE
    assert get_runtime("command").resume_argv(request(command=("x", "y")), "go on") == ["x", "y"]


# ---------------------------------------------------------------- claude

@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    monkeypatch.delenv("CLAUDE_CODE_BUBBLEWRAP", raising=False)


def test_claude_start_argv_with_model_and_tier_args(as_user: None) -> None:
    req = request(args=("--permission-mode", "acceptEdits", "--allowedTools", "Edit", "Bash(git *)"))
    assert ClaudeRuntime().start_argv(req) == [
        "claude", "-p", "--session-id", UUID, "--model", "sonnet", "--output-format", "stream-json", "--verbose",
        "--permission-mode", "acceptEdits", "--allowedTools", "Edit", "Bash(git *)",
        "--", "Audit login.py",
    ]


def test_claude_start_argv_omits_model_when_unset(as_user: None) -> None:
    argv = ClaudeRuntime().start_argv(request(model=None))
    assert "--model" not in argv
    assert argv == ["claude", "-p", "--session-id", UUID, "--output-format", "stream-json", "--verbose", "--",
                    "Audit login.py"]


def test_claude_prompt_is_an_operand_even_when_it_looks_like_a_flag(as_user: None) -> None:
    # Real claude 2.1.332: `claude -p "-x hello"` fails with "unknown option", and a
    # prompt after `--allowedTools Edit` is read as a tool name; after `--` it is the prompt.
    argv = ClaudeRuntime().start_argv(request(prompt="- fix auth\n- add tests", args=("--allowedTools", "Edit")))
    assert argv[-2:] == ["--", "- fix auth\n- add tests"]


def test_claude_resume_argv(as_user: None) -> None:
    req = request(args=("--permission-mode", "acceptEdits"))
    assert ClaudeRuntime().resume_argv(req, "The tests gate failed; fix it.") == [
        "claude", "-p", "--resume", UUID, "--model", "sonnet", "--output-format", "stream-json", "--verbose",
        "--permission-mode", "acceptEdits", "--", "The tests gate failed; fix it.",
    ]


def test_claude_cannot_resume_a_session_it_did_not_persist(as_user: None) -> None:
    assert ClaudeRuntime().resume_argv(request(args=("--no-session-persistence",)), "go on") is None


@pytest.mark.parametrize("args", [
    ("--permission-mode", "bypassPermissions"),
    ("--permission-mode=bypassPermissions",),
    ("--dangerously-skip-permissions",),
])
def test_claude_bypass_permissions_as_root_is_refused_up_front(as_root: None, args: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="root"):
        ClaudeRuntime().start_argv(request(args=args))
    with pytest.raises(ValueError, match="IS_SANDBOX=1"):
        ClaudeRuntime().resume_argv(request(args=args), "go on")


def test_claude_bypass_as_root_is_allowed_where_claude_allows_it(
        as_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("--permission-mode", "bypassPermissions")
    monkeypatch.setenv("IS_SANDBOX", "1")
    assert ClaudeRuntime().start_argv(request(args=args))[-4:-2] == list(args)


def test_claude_bypass_as_non_root_and_other_modes_as_root_are_fine(
        as_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "acceptEdits" in ClaudeRuntime().start_argv(request(args=("--permission-mode", "acceptEdits")))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "bypassPermissions" in ClaudeRuntime().start_argv(request(args=("--permission-mode", "bypassPermissions")))


# Captured from claude 2.1.332 (`claude -p --session-id ... --output-format json -- hi`, no login).
CLAUDE_NOT_LOGGED_IN = (
    '{"duration_api_ms":0,"stop_reason":"stop_sequence","session_id":"6f0e8a52-9a57-4c43-9d2e-5a1f7c0b6a11",'
    '"total_cost_usd":0,"usage":{"output_tokens_details":{"thinking_tokens":0},"input_tokens":0,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":'
    '{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard","cache_creation":'
    '{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],'
    '"speed":"standard","fallback_credit":null},"modelUsage":{},"permission_denials":[],'
    '"terminal_reason":"api_error","fast_mode_state":"off","fast_mode_disabled_reason":"sdk_opt_in_required",'
    '"safety_stops":0,"is_error":true,"num_turns":1,"subtype":"success","api_error_status":null,'
    '"result":"Not logged in \u00b7 Please run /login","type":"result","duration_ms":137,'
    '"uuid":"9183987d-1497-4cac-b244-8217b132086a","queued_turn_count":0,"result_index":0}'
)


def claude_success(cost: float, session_id: str = UUID) -> str:
    """A successful result, shaped like the real one above with modelUsage filled in."""
    data = json.loads(CLAUDE_NOT_LOGGED_IN)
    data.update(session_id=session_id, total_cost_usd=cost, is_error=False, num_turns=7,
                terminal_reason="completed", result="Fixed the missing auth check; committed.",
                usage={"input_tokens": 12, "cache_creation_input_tokens": 3000,
                       "cache_read_input_tokens": 40000, "output_tokens": 900},
                modelUsage={
                    "claude-sonnet-4-5": {"inputTokens": 20, "outputTokens": 1200, "cacheReadInputTokens": 52000,
                                          "cacheCreationInputTokens": 4100, "webSearchRequests": 0,
                                          "costUSD": cost - 0.01, "contextWindow": 200000},
                    "claude-haiku-4-5": {"inputTokens": 800, "outputTokens": 60, "cacheReadInputTokens": 0,
                                         "cacheCreationInputTokens": 0, "webSearchRequests": 0,
                                         "costUSD": 0.01, "contextWindow": 200000}})
    return json.dumps(data, separators=(",", ":"))


def test_claude_parses_the_real_error_result_after_junk_lines() -> None:
    log = ("--- fleet: start 2026-11-26T02:20:00+0000: claude -p ...\n"
           "Warning: settings file .claude/settings.json failed validation, ignored\n"
           "{not json at all\n" + CLAUDE_NOT_LOGGED_IN + "\n")
    res = ClaudeRuntime().parse_result(log)
    assert res.session_id == "6f0e8a52-9a57-4c43-9d2e-5a1f7c0b6a11"
    assert res.is_error is True
    assert res.cost_usd == 0.0
    assert res.message == "Not logged in \u00b7 Please run /login"
    assert res.extra["terminal_reason"] == "api_error"
    assert res.extra["subtype"] == "success"  # subtype alone does not mean success
    assert (res.input_tokens, res.output_tokens) == (0, 0)  # modelUsage empty: falls back to usage


def test_claude_tokens_come_from_model_usage_and_the_last_result_wins() -> None:
    log = claude_success(0.50) + "\n--- fleet: resume ...\n" + claude_success(0.93) + "\n"
    res = ClaudeRuntime().parse_result(log)
    assert res.cost_usd == pytest.approx(0.93)
    assert res.is_error is False
    assert res.input_tokens == 20 + 52000 + 4100 + 800
    assert res.output_tokens == 1260
    assert res.message == "Fixed the missing auth check; committed."
    assert res.extra["usage_scope"] == "conversation"
    assert res.extra["num_turns"] == 7


def test_claude_finds_a_result_glued_behind_stderr_junk() -> None:
    log = "Error: something went wrong while flushing telemetry" + claude_success(0.2) + "\n"
    assert ClaudeRuntime().parse_result(log).cost_usd == pytest.approx(0.2)


def test_claude_reads_the_verbose_json_array_form() -> None:
    messages = [{"type": "system", "subtype": "init", "session_id": UUID},
                {"type": "assistant", "message": {"content": []}},
                json.loads(claude_success(0.07))]
    assert ClaudeRuntime().parse_result(json.dumps(messages)).cost_usd == pytest.approx(0.07)


def test_claude_without_a_result_object_reports_nothing() -> None:
    log = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n"
    res = ClaudeRuntime().parse_result(log + '{"type":"assistant","session_id":"x"}\n')
    assert res.session_id is None and res.cost_usd is None and res.is_error is None


# ---------------------------------------------------------------- codex

def test_codex_start_argv() -> None:
    req = request(model="gpt-5-mini", args=("-s", "workspace-write"))
    assert CodexRuntime().start_argv(req) == [
        "codex", "exec", "--json", "-m", "gpt-5-mini", "-C", str(WORKDIR), "-s", "workspace-write",
        "--", "Audit login.py",
    ]
    assert CodexRuntime().start_argv(request(model=None)) == [
        "codex", "exec", "--json", "-C", str(WORKDIR), "--", "Audit login.py"]


def test_codex_resume_argv_takes_the_thread_id_and_rewrites_tier_args() -> None:
    req = request(session_id="01a215a7-dc8f-7251-b3bf-5e2145d3537e", model="gpt-5-mini",
                  args=("-s", "workspace-write", "-C", "/elsewhere", "-c", 'model_reasoning_effort="high"'))
    assert CodexRuntime().resume_argv(req, "-fix the gate") == [
        "codex", "exec", "resume", "--json", "-m", "gpt-5-mini",
        "-c", 'sandbox_mode="workspace-write"', "-c", 'model_reasoning_effort="high"',
        "--", "01a215a7-dc8f-7251-b3bf-5e2145d3537e", "-fix the gate",
    ]


def test_codex_resume_handles_inline_flag_values() -> None:
    argv = CodexRuntime().resume_argv(request(args=("--sandbox=read-only", "--cd=/x", "--color", "never")), "go")
    assert argv is not None
    assert argv[argv.index("--") - 2:argv.index("--")] == ["-c", 'sandbox_mode="read-only"']
    assert "--cd=/x" not in argv and "--color" not in argv and "never" not in argv


@pytest.mark.parametrize("args", [("--ephemeral",), ("-p", "ci"), ("--profile=ci",), ("--oss",),
                                  ("--add-dir", "/tmp/x")])
def test_codex_tier_args_that_resume_rejects_mean_restart(args: tuple[str, ...]) -> None:
    assert CodexRuntime().resume_argv(request(args=args), "go on") is None


# stdout+stderr of real codex 0.169.0 offline (`codex exec --json -m gpt-5-mini -C /tmp/cx -- "-x hello"`).
CODEX_OFFLINE = """\
WARNING: proceeding, even though we could not create PATH aliases: Refusing to create helper binaries under temporary dir "/tmp"
Reading additional input from stdin...
{"type":"thread.started","thread_id":"01a215a7-dc8f-7251-b3bf-5e2145d3537e"}
2026-11-26T02:20:52.279570Z ERROR codex_api::endpoint::responses_websocket: failed to connect to Responses WebSocket stage=Unknown
{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `gpt-5-mini` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}
{"type":"turn.started"}
{"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion: failed to lookup address information: Name does not resolve)"}
{"type":"item.completed","item":{"id":"item_1","type":"error","message":"Falling back from WebSockets to HTTPS transport."}}
{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}
"""

CODEX_TURN_DONE = """\
{"type":"item.started","item":{"id":"item_2","type":"command_execution","command":"bash -lc 'pytest -q'","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"bash -lc 'pytest -q'","aggregated_output":"3 passed in 0.12s\\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_3","type":"file_change","changes":[{"path":"src/routes/login.py","kind":"update"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_4","type":"agent_message","text":"Added the missing auth check and a test."}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}
"""


def test_codex_parses_thread_id_usage_and_final_message() -> None:
    res = CodexRuntime().parse_result(CODEX_OFFLINE + CODEX_TURN_DONE)
    assert res.session_id == "01a215a7-dc8f-7251-b3bf-5e2145d3537e"
    assert (res.input_tokens, res.output_tokens) == (24763, 122)
    assert res.extra["cached_input_tokens"] == 24448
    assert res.cost_usd is None
    assert res.is_error is False  # "error" events are retries, not failures
    assert res.message == "Added the missing auth check and a test."


def test_codex_offline_run_has_a_thread_but_no_verdict() -> None:
    res = CodexRuntime().parse_result(CODEX_OFFLINE)
    assert res.session_id == "01a215a7-dc8f-7251-b3bf-5e2145d3537e"
    assert res.is_error is None and res.input_tokens is None


def test_codex_turn_failed_is_an_error() -> None:
    log = ('{"type":"thread.started","thread_id":"t-1"}\n{"type":"turn.started"}\n'
           '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}\n')
    res = CodexRuntime().parse_result(log)
    assert res.is_error is True
    assert res.message == "unexpected status 401 Unauthorized"


def test_codex_resumed_log_keeps_the_last_running_total() -> None:
    first = '{"type":"thread.started","thread_id":"t-1"}\n{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"output_tokens":10}}\n'
    second = '{"type":"thread.started","thread_id":"t-1"}\n{"type":"turn.completed","usage":{"input_tokens":250,"cached_input_tokens":90,"output_tokens":31}}\n'
    res = CodexRuntime().parse_result(first + "--- fleet: resume ...\n" + second)
    assert (res.session_id, res.input_tokens, res.output_tokens) == ("t-1", 250, 31)
    assert res.extra["usage_scope"] == "conversation"


def test_codex_log_without_events_reports_nothing() -> None:
    res = CodexRuntime().parse_result("error: unexpected argument '-x' found\n\n  tip: to pass '-x' as a value, use '-- -x'\n")
    assert (res.session_id, res.is_error, res.input_tokens, res.message, res.extra) == (None, None, None, None, {})


# ---------------------------------------------------------------- gemini

def test_gemini_start_and_resume_argv() -> None:
    req = request(model="gemini-2.5-pro", args=("--skip-trust", "--approval-mode", "auto_edit"))
    assert GeminiRuntime().start_argv(req) == [
        "gemini", "--prompt=Audit login.py", "--session-id", UUID, "-m", "gemini-2.5-pro",
        "--output-format", "json", "--skip-trust", "--approval-mode", "auto_edit",
    ]
    assert GeminiRuntime().resume_argv(request(model=None), "-x keep going") == [
        "gemini", "--prompt=-x keep going", "--resume", UUID, "--output-format", "json",
    ]


def gemini_stats(**models: tuple[int, int]) -> dict[str, object]:
    """`stats` as gemini's JsonFormatter prints it (uiTelemetryService metrics)."""
    return {
        "models": {name: {"api": {"totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 5120},
                          "tokens": {"input": prompt - 100, "prompt": prompt, "candidates": out,
                                     "total": prompt + out, "cached": 100, "thoughts": 40, "tool": 0}}
                   for name, (prompt, out) in models.items()},
        "tools": {"totalCalls": 3, "totalSuccess": 3, "totalFail": 0, "totalDurationMs": 900,
                  "totalDecisions": {"accept": 0, "reject": 0, "modify": 0, "auto_accept": 3}, "byName": {}},
        "files": {"totalLinesAdded": 12, "totalLinesRemoved": 2},
    }


def test_gemini_parses_pretty_printed_json_after_stderr_noise() -> None:
    body = {"session_id": UUID, "response": "Added the auth check.",
            "stats": gemini_stats(**{"gemini-2.5-pro": (8000, 500), "gemini-2.5-flash-lite": (1200, 30)})}
    log = ("Warning: 256-color support not detected. Using a terminal with at least 256-color support is recommended.\n"
           "Ripgrep is not available. Falling back to GrepTool.\n" + json.dumps(body, indent=2))
    res = GeminiRuntime().parse_result(log)
    assert res.session_id == UUID
    assert (res.input_tokens, res.output_tokens) == (9200, 530)
    assert res.is_error is False
    assert res.message == "Added the auth check."
    assert res.cost_usd is None


def test_gemini_real_auth_error_output() -> None:
    # Real gemini 0.61.0 output without credentials (exit 41).
    log = """{
  "session_id": "9a8528f1-acce-4392-87bf-0d0a96f195f5",
  "error": {
    "type": "Error",
    "message": "Please set an Auth method in your /tmp/fakehome/.gemini/settings.json or specify one of the following environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA",
    "code": 41
  }
}"""
    res = GeminiRuntime().parse_result(log)
    assert res.is_error is True
    assert res.session_id == "9a8528f1-acce-4392-87bf-0d0a96f195f5"
    assert res.message is not None and res.message.startswith("Please set an Auth method")


def test_gemini_stream_json_events() -> None:
    log = "\n".join(json.dumps(e) for e in [
        {"type": "init", "timestamp": "2026-11-26T02:22:00Z", "session_id": UUID, "model": "gemini-2.5-pro"},
        {"type": "message", "role": "assistant", "content": "Done.", "delta": True},
        {"type": "result", "timestamp": "2026-11-26T02:23:00Z", "status": "success",
         "stats": {"total_tokens": 830, "input_tokens": 800, "output_tokens": 30, "cached": 0, "input": 800,
                   "duration_ms": 60000, "tool_calls": 1, "models": {}}},
    ])
    res = GeminiRuntime().parse_result(log)
    assert (res.session_id, res.input_tokens, res.output_tokens, res.is_error) == (UUID, 800, 30, False)


def test_gemini_fatal_error_before_any_json_surfaces_its_last_line() -> None:
    # Real gemini 0.61.0 in a fresh (untrusted) folder: red text on stderr, exit 55.
    log = ("\x1b[31mGemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, "
           "set the `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in "
           "interactive mode.\x1b[0m\n")
    res = GeminiRuntime().parse_result(log)
    assert res.message is not None and res.message.startswith("Gemini CLI is not running in a trusted directory")
    assert "\x1b" not in res.message
    assert res.is_error is None and res.session_id is None


# ---------------------------------------------------------------- aider

def test_aider_argv() -> None:
    req = request(prompt="- fix login", model="sonnet", args=("--no-gitignore",))
    assert AiderRuntime().start_argv(req) == [
        "aider", "--message=- fix login", "--model", "sonnet", "--yes-always", "--no-gitignore"]
    assert AiderRuntime().start_argv(request(model=None)) == ["aider", "--message=Audit login.py", "--yes-always"]
    assert AiderRuntime().can_resume is False


def test_aider_cost_is_the_last_session_figure() -> None:
    log = """\
Aider v0.86.2
Main model: anthropic/claude-sonnet-4-5 with diff edit format
Tokens: 2.3k sent, 105 received. Cost: $0.0085 message, $0.0085 session.
Applied edit to src/routes/login.py
Commit 1a2b3c4 fix: require auth on login route
Tokens: 4.1k sent, 3.2k cache write, 1.1k cache hit, 240 received.
Cost: $0.03 message, $0.04 session.
"""
    res = AiderRuntime().parse_result(log)
    assert res.cost_usd == pytest.approx(0.04)
    assert res.session_id is None


def test_aider_without_prices_reports_no_cost() -> None:
    log = "Tokens: 2.3k sent, 105 received.\n\x1b[1mApplied edit to a.py\x1b[0m\n"
    assert AiderRuntime().parse_result(log).cost_usd is None


# ---------------------------------------------------------------- command

def test_command_argv_and_env() -> None:
    req = request(command=("python", "scripts/docs_agent.py"), args=("--verbose",), model=None)
    assert CommandRuntime().start_argv(req) == ["python", "scripts/docs_agent.py", "--verbose"]
    assert CommandRuntime().env(req) == {"FLEET_PROMPT": "Audit login.py"}


def test_command_without_argv_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs `command:`"):
        CommandRuntime().start_argv(request(command=None))


def test_command_reads_a_fleet_result_last_line() -> None:
    log = 'working...\n{"step": 1}\n{"fleet_result": {"cost_usd": 0.12, "session_id": "s-9", "is_error": false, "output_tokens": 50}}\n\n'
    res = CommandRuntime().parse_result(log)
    assert (res.cost_usd, res.session_id, res.is_error, res.output_tokens) == (0.12, "s-9", False, 50)


def test_command_reads_claude_style_top_level_fields() -> None:
    res = CommandRuntime().parse_result('done\n{"total_cost_usd": 0.3, "session_id": "abc"}\n')
    assert (res.cost_usd, res.session_id) == (0.3, "abc")


@pytest.mark.parametrize("log", [
    '{"cost_usd": 0.5}\nall done\n',            # JSON, but not on the last line
    'progress\n{"step": 3, "ok": true}\n',      # last line JSON without result keys
    '[1, 2, 3]\n',
    '',
])
def test_command_without_a_result_line_reports_nothing(log: str) -> None:
    res = CommandRuntime().parse_result(log)
    assert res.cost_usd is None and res.session_id is None


def test_command_ignores_values_of_the_wrong_type() -> None:
    res = CommandRuntime().parse_result('{"cost_usd": "lots", "session_id": 7, "is_error": "no"}')
    assert (res.cost_usd, res.session_id, res.is_error) == (None, None, None)


def test_claude_prompt_says_how_to_use_the_fleets_locks(as_user: None) -> None:
    argv = ClaudeRuntime().start_argv(request(locks=("build", "gpu")))
    assert argv[-1].startswith("Audit login.py\n\n")
    assert "`fleet lock build -- <command>` (locks: build, gpu)" in argv[-1]
    assert ClaudeRuntime().start_argv(request())[-1] == "Audit login.py"  # no locks, no line
