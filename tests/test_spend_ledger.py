"""The ledger's pure parts: prices, usage left behind, one entry per run, cost display (issue 17).

Tables, no I/O beyond reading the captured claude 2.1.332 stream (tests/data). The real CLI
runs are in test_spend_e2e.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.act.costs import fold_run, model_mismatch
from reconciler.plan.budget import usd
from reconciler.runtimes.base import SessionResult
from reconciler.runtimes.claude import ClaudeRuntime
from reconciler.runtimes.pricing import Price, Tokens, cost
from reconciler.runtimes.usage import RunUsage, aider_usage, claude_usage, cli_warnings, conversation_cost
from reconciler.store.records import SessionRecord

STREAM = (Path(__file__).parent / "data" / "claude-2.1.332-stream.jsonl").read_text()
SONNET = "claude-sonnet-4-5-20250929"


@pytest.mark.parametrize("model, tokens, expected", [
    (SONNET, Tokens(input=1_000_000, output=1_000_000), 18.0),
    ("claude-opus-4-5-20251101", Tokens(input=1_000_000), 5.0),  # not the older opus's $15
    ("claude-opus-4-1-20250805", Tokens(input=1_000_000), 15.0),
    ("claude-haiku-4-5", Tokens(output=1_000_000), 5.0),
    (SONNET, Tokens(cache_read=1_000_000, cache_write=1_000_000), 0.3 + 3.75),
    ("gpt-5-mini", Tokens(input=1_000_000, cache_read=1_000_000), 0.25 + 0.025),
    ("some-local-model", Tokens(input=10), None),
])
def test_price_table(model: str, tokens: Tokens, expected: float | None) -> None:
    assert cost(model, tokens) == (pytest.approx(expected) if expected is not None else None)


def test_overrides_come_first() -> None:
    assert cost(SONNET, Tokens(input=1_000_000), (Price("sonnet-4-5", 1.0, 2.0),)) == pytest.approx(1.0)
    assert cost("some-local-model", Tokens(output=1_000_000), (Price("local", 0, 0.5),)) == pytest.approx(0.5)


@pytest.mark.parametrize("version, per_conversation", [
    ("2.1.332", True), ("2.1.400", True), ("3.0.0", True), ("2.1.197", False), ("2.1.300", False), (None, True),
])
def test_claude_cost_semantics_by_version(version: str | None, per_conversation: bool) -> None:
    assert conversation_cost(version) is per_conversation


def test_claude_usage_from_the_stream_and_its_transcript() -> None:
    # the stream's assistant events carry the output count at the stream's start (1)...
    seen = claude_usage(STREAM)
    assert seen.version == "2.1.332" and seen.seen
    assert seen.by_model == {SONNET: Tokens(input=3000, output=2)}
    # ...the transcript the final usage of the same messages, by id
    transcript = "\n".join(json.dumps({"type": "assistant", "message": {
        "id": ident, "model": SONNET, "usage": {"input_tokens": inp, "output_tokens": out}}})
        for ident, inp, out in (("msg_test_1", 1000, 100), ("msg_test_3", 2000, 200), ("msg_other_run", 9, 9)))
    assert claude_usage(STREAM, transcript).by_model == {SONNET: Tokens(input=3000, output=300)}


def rec(**kw: object) -> SessionRecord:
    base = {"agent": "a", "fleet": "t", "runtime": "claude", "model": SONNET, "session_id": "s1",
            "started_at": "2026-01-01T10:00:00+00:00", "finished_at": "2026-01-01T10:05:00+00:00"}
    return SessionRecord(**{**base, **kw})  # type: ignore[arg-type]


def result(total: float, **extra: object) -> SessionResult:
    return SessionResult(session_id="s1", cost_usd=total, extra={"usage_scope": "conversation", **extra})


def test_a_conversations_running_total_is_recorded_as_each_runs_share() -> None:
    r = rec()
    fold_run(r, result(0.3), RunUsage(version="2.1.332"))
    r.started_at, r.finished_at = "2026-01-01T11:00:00+00:00", "2026-01-01T11:05:00+00:00"
    fold_run(r, result(0.9), RunUsage(version="2.1.332"))
    assert [e["usd"] for e in r.ledger.values()] == pytest.approx([0.3, 0.6]) and r.cost_usd == pytest.approx(0.9)


def test_an_old_claudes_resumed_total_is_its_process_alone() -> None:
    r = rec()
    fold_run(r, result(0.3), RunUsage(version="2.1.197"))
    r.started_at = "2026-01-01T11:00:00+00:00"
    fold_run(r, result(0.6), RunUsage(version="2.1.197"))
    assert r.cost_usd == pytest.approx(0.9)
    assert {e["scope"] for e in r.ledger.values()} == {"process"}


def test_a_killed_run_is_priced_from_what_it_left_and_the_resumed_total_does_not_include_it() -> None:
    r = rec()
    fold_run(r, SessionResult(), RunUsage(by_model={SONNET: Tokens(input=100_000, output=10_000)}, seen=True))
    r.started_at = "2026-01-01T11:00:00+00:00"
    fold_run(r, result(0.225), RunUsage(version="2.1.332"))
    assert [(e["source"], e["usd"]) for e in r.ledger.values()] == [("transcript", pytest.approx(0.45)),
                                                                    ("result", pytest.approx(0.225))]


def test_an_unknown_cost_counts_at_the_runs_cap() -> None:
    r = rec(runtime="gemini", reserved_usd=0.5, cap_usd=1.0)
    entry = fold_run(r, SessionResult(), RunUsage(seen=True))
    assert entry is not None and entry["unknown"] is True and entry["usd"] == 1.0 and r.cost_usd == 1.0
    assert r.reserved_usd is None and r.cap_usd is None  # spent: the ledger holds it now


def test_an_unpriced_model_is_unknown_too() -> None:
    entry = fold_run(rec(model="local-llm", cap_usd=2.0), SessionResult(),
                     RunUsage(by_model={"local-llm": Tokens(input=5)}, seen=True))
    assert entry is not None and entry["unknown"] is True and entry["usd"] == 2.0


def test_a_command_run_without_result_spends_nothing_known() -> None:
    assert fold_run(rec(runtime="command"), SessionResult(), RunUsage()) is None


def test_codex_tokens_are_priced_with_the_tiers_model() -> None:
    r = rec(runtime="codex", model="gpt-5")
    res = SessionResult(session_id="th", input_tokens=1_000_000, output_tokens=100_000,
                        extra={"usage_scope": "conversation", "cached_input_tokens": 400_000})
    fold_run(r, res, RunUsage())
    assert r.cost_usd == pytest.approx(0.6 * 1.25 + 0.4 * 0.125 + 0.1 * 10)


def test_aider_cost_lines_and_cli_warnings() -> None:
    log = ("Tokens: 2.3k sent, 105 received. Cost: $0.0085 message, $0.0412 session.\n"
           "Warning: model claude-3-opus-20240229 is retired; use claude-opus-4-5\n")
    assert aider_usage(log).usd == pytest.approx(0.0412)
    assert cli_warnings(log) == ["Warning: model claude-3-opus-20240229 is retired; use claude-opus-4-5"]
    # what claude 2.1.332 prints on stderr for a model id it does not know
    unknown = '[claude-code:unrecognized_model] {"model":"claude-2.1","query_source":"sdk"}\n{"type":"result"}\n'
    assert cli_warnings(unknown) == ['[claude-code:unrecognized_model] {"model":"claude-2.1","query_source":"sdk"}']


def test_the_billed_model_comes_from_modelUsage() -> None:
    res = ClaudeRuntime().parse_result(STREAM)
    assert res.extra["billed_models"] == [SONNET]
    assert model_mismatch(SONNET, [SONNET]) is None
    assert model_mismatch("claude-3-5-sonnet-20240620", [SONNET]) == (
        f"declared model claude-3-5-sonnet-20240620 was billed as {SONNET}")
    assert model_mismatch("sonnet", [SONNET]) is None  # an alias the billed id contains


@pytest.mark.parametrize("value, shown", [
    (0, "$0.00"), (0.003, "$0.003"), (0.0009, "$0.0009"), (0.00004, "$0.00004"), (0.0135, "$0.013"),
    (0.35, "$0.35"), (1.2, "$1.20"), (1234.5, "$1,234.50"),
])
def test_costs_keep_enough_digits(value: float, shown: str) -> None:
    assert usd(value) == shown


def test_a_resumed_claude_process_is_recorded_at_its_own_cost() -> None:
    # 2.1.332's resumed result: total_cost_usd is the conversation's (it restored an earlier process
    # stopped by SIGTERM, already in the ledger from that run's transcript); its own cost is per model
    line = json.dumps({"type": "result", "session_id": "s1", "total_cost_usd": 0.61815, "is_error": False,
                       "model_usage_since_last_result": {SONNET: {"inputTokens": 1000, "costUSD": 0.00315}}})
    r = rec()
    fold_run(r, SessionResult(), RunUsage(by_model={SONNET: Tokens(input=200_000, output=1_000)}, seen=True))
    r.started_at = "2026-01-01T11:00:00+00:00"
    fold_run(r, ClaudeRuntime().parse_result(line + "\n"), RunUsage(version="2.1.332"))
    assert [e["usd"] for e in r.ledger.values()] == pytest.approx([0.615, 0.00315])


def test_the_total_a_resumed_claude_restores() -> None:
    from reconciler.runtimes.usage import claude_restored_total

    transcript = "\n".join(json.dumps(e) for e in (
        {"type": "cost-state", "totalCostUSD": 0.3}, {"type": "assistant"},
        {"type": "cost-state", "totalCostUSD": 0.9}))
    assert claude_restored_total(transcript) == pytest.approx(0.9) and claude_restored_total("") is None


@pytest.mark.parametrize("line, shown", [
    ({"name": "budget.windows[1]", "unit": "tokens", "limit": 1000, "period": "per 1h", "spent": 300,
      "reserved": 900, "left": -200}, "budget.windows[1] (per 1h): 300 tokens of 1,000, 900 reserved"),
    ({"name": "budget.windows[1]", "unit": "tokens", "limit": 1000, "period": "per 1h", "spent": 300,
      "reserved": 0, "left": 700}, "budget.windows[1] (per 1h): 300 tokens of 1,000"),
    ({"name": "budget.usdPerDay", "unit": "usd", "limit": 1.5, "period": "today", "spent": 1.0, "reserved": 0.5,
      "left": 0.0}, "budget.usdPerDay (today): $1.00 spent of $1.50, $0.50 reserved, $0.00 left"),
])
def test_a_budget_line_as_status_shows_it(line: dict, shown: str) -> None:
    from reconciler.render.spend import budget_line

    assert budget_line(line) == shown
