"""Result objects printed by the real Claude Code 2.1.332 against tests/model_server.py, parsed
by the claude adapter (captured verbatim, trimmed of fields fleet does not read)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.runtimes.claude import ClaudeRuntime

SUCCESS = ('{"duration_api_ms":94,"stop_reason":"end_turn","session_id":"8d828b4d-f0c1-468f-b497-ea3322dbb0ce",'
           '"total_cost_usd":0.0009000000000000001,"usage":{"input_tokens":200,"cache_creation_input_tokens":0,'
           '"cache_read_input_tokens":0,"output_tokens":20},"modelUsage":{"claude-sonnet-4-5-20250929":'
           '{"inputTokens":200,"outputTokens":20,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,'
           '"costUSD":0.0009000000000000001}},"terminal_reason":"completed","is_error":false,"num_turns":2,'
           '"subtype":"success","api_error_status":null,"result":"done","type":"result","duration_ms":416}')
UNAUTHORIZED = ('{"duration_api_ms":0,"stop_reason":"stop_sequence",'
                '"session_id":"d1f7a35c-73b5-4838-9d41-bbb3828729fd",'
                '"total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0},"modelUsage":{},'
                '"terminal_reason":"api_error","is_error":true,"num_turns":1,"subtype":"success",'
                '"api_error_status":401,"api_error_type":"authentication_error",'
                '"result":"Invalid API key \\u00b7 Fix external API key","type":"result","duration_ms":164}')
OVERLOADED = ('{"duration_api_ms":0,"session_id":"c74c4b19-4b05-4ebd-9a82-0d3f0bcfeb67","total_cost_usd":0,'
              '"modelUsage":{},"terminal_reason":"api_error","is_error":true,"num_turns":1,"subtype":"success",'
              '"api_error_status":529,"api_error_type":"overloaded_error","result":"API Error: 529 Overloaded. '
              'This is a server-side issue, usually temporary \\u2014 try again in a moment. If it persists, check '
              'your inference gateway (127.0.0.1:42303).","type":"result","duration_ms":918}')


def test_success_result() -> None:
    res = ClaudeRuntime().parse_result(SUCCESS + "\n")
    assert (res.session_id, res.is_error, res.message) == ("8d828b4d-f0c1-468f-b497-ea3322dbb0ce", False, "done")
    assert res.cost_usd == pytest.approx(0.0009) and (res.input_tokens, res.output_tokens) == (200, 20)
    assert res.extra["num_turns"] == 2 and res.extra["terminal_reason"] == "completed"


def test_401_message_carries_the_api_status() -> None:
    res = ClaudeRuntime().parse_result(UNAUTHORIZED + "\n")
    assert res.is_error is True and res.cost_usd == 0
    assert res.message == "API error 401: Invalid API key \u00b7 Fix external API key"
    assert res.extra["api_error_status"] == 401 and res.extra["api_error_type"] == "authentication_error"


def test_529_message_already_names_the_status() -> None:
    res = ClaudeRuntime().parse_result(OVERLOADED + "\n")
    assert res.is_error is True and res.message is not None
    assert res.message.startswith("API Error: 529 Overloaded.")


STREAM = Path(__file__).parent / "data" / "claude-2.1.332-stream.jsonl"  # `--output-format stream-json --verbose`


def test_stream_json_log_is_read_from_its_final_result_event() -> None:
    # the log fleet keeps: its run marker, then claude's events, one per line, the result last
    log = "--- fleet: start claude -p ... --output-format stream-json --verbose\n" + STREAM.read_text()
    res = ClaudeRuntime().parse_result(log)
    assert (res.session_id, res.is_error, res.message) == ("8d828b4d-f0c1-468f-b497-ea3322dbb0ce", False, "done")
    assert res.cost_usd == pytest.approx(0.0135) and (res.input_tokens, res.output_tokens) == (3000, 300)
    assert res.extra["num_turns"] == 2 and res.extra["usage_scope"] == "conversation"


def test_stream_json_without_a_result_event_has_no_result() -> None:
    # a process killed mid-turn: events up to the kill, no result
    events = [line for line in STREAM.read_text().splitlines() if '"type":"result"' not in line]
    res = ClaudeRuntime().parse_result("\n".join(events) + "\n")
    assert (res.session_id, res.cost_usd, res.is_error) == (None, None, None)
