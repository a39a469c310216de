"""One ledger entry per run, whatever way the run ended (docs/operations.md "Spend").

The cost of a run is, in this order: the runtime's result (claude's total_cost_usd,
aider's session figure), converted from a conversation's running total to this
run's share when the CLI reports per conversation; else tokens the run left behind
(its result, its stream-json events, claude's transcript), priced per model
(runtimes/pricing.py, `budget.prices`); else unknown, recorded at the run's cap (its
reservation) so a budget counts it rather than forgetting it.

Entries are keyed `run-<started_at>` and carry what this run cost, when it ended,
where the figure came from, its session and tokens: day and window budgets sum them.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..runtimes.base import SessionResult
from ..runtimes.pricing import Price, Tokens, cost, priced
from ..runtimes.usage import RunUsage, conversation_cost
from ..store.records import SessionRecord

BILLING_RUNTIMES = frozenset({"claude", "codex", "gemini", "aider"})  # `command` bills nobody fleet knows


def fold_run(rec: SessionRecord, result: SessionResult, usage: RunUsage, *,
             prices: Sequence[Price] = ()) -> dict[str, object] | None:
    """Record the run `rec` describes (started_at .. finished_at) in its ledger; the entry, or
    None for a run that spent nothing fleet can know of (a `command` run without a result)."""
    entry = _entry(rec, result, usage, prices)
    if entry is None:
        return None
    entry["at"] = rec.finished_at
    if usage.version:
        entry["cli"] = usage.version
    rec.ledger[f"run-{rec.started_at}"] = entry
    rec.cost_usd = round(sum(float(e.get("usd") or 0) for e in rec.ledger.values()), 6)
    # the run's reservation is spent: what it cost is in the ledger now
    rec.reserved_usd = rec.cap_usd = None
    return entry


def _entry(rec: SessionRecord, result: SessionResult, usage: RunUsage,
           prices: Sequence[Price]) -> dict[str, object] | None:
    session = result.session_id or rec.session_id
    models = _billed(result, usage)
    tokens = sum(t.total for t in usage.by_model.values()) or (result.input_tokens or 0) + (result.output_tokens or 0)
    base: dict[str, object] = {"session": session, "tokens": tokens, "models": models}
    scope = str(result.extra.get("usage_scope") or "process")
    if rec.runtime == "claude" and scope == "conversation" and not conversation_cost(usage.version):
        scope = "process"  # an older claude: its resumed total is this process's alone
    reported = result.cost_usd
    if reported is None and (result.input_tokens or result.output_tokens):
        # tokens only (codex): priced with the declared model
        cached = int(result.extra.get("cached_input_tokens") or 0)  # type: ignore[call-overload]
        reported = cost(rec.model, Tokens(input=max(0, (result.input_tokens or 0) - cached),
                                          output=result.output_tokens or 0, cache_read=cached), prices)
    own = result.extra.get("process_cost_usd")
    if isinstance(own, (int, float)) and reported is not None:
        # the CLI's own figure for this process (claude 2.1.332): exact whatever the conversation restored
        return {**base, "usd": round(float(own), 9), "source": "result", "scope": "process", "total": reported}
    if reported is not None:
        usd = reported
        if scope == "conversation":
            # the CLI's running total includes this conversation's earlier results (not a killed
            # process's turns: those never reached its total, so they stay separate entries)
            usd = max(0.0, reported - conversation_reported(rec, session))
        return {**base, "usd": round(usd, 9), "source": "result", "scope": scope, "total": reported}
    if usage.usd is not None:
        return {**base, "usd": usage.usd, "source": "log", "scope": "process"}
    if usage.by_model:
        total, _per = priced(usage.by_model, prices)
        if total is not None:
            return {**base, "usd": round(total, 9), "source": "transcript" if rec.runtime == "claude" else "log",
                    "scope": "process"}
    if rec.runtime not in BILLING_RUNTIMES:
        return None
    if not usage.seen and result == SessionResult() and not usage.by_model:
        # no trace at all of a model call: it never got that far (a start that failed)
        return None if rec.exit_code == 127 else _unknown(rec, base)
    return _unknown(rec, base)


def _unknown(rec: SessionRecord, base: dict[str, object]) -> dict[str, object]:
    """Cost unknown: counted at the run's cap, so a budget never forgets it."""
    cap = rec.cap_usd or rec.reserved_usd or 0.0
    return {**base, "usd": cap, "source": "unknown", "scope": "process", "unknown": True}


def conversation_reported(rec: SessionRecord, session: str | None) -> float:
    """This conversation's share already recorded from its earlier results."""
    total = 0.0
    for key, entry in rec.ledger.items():
        if "source" not in entry:  # before run entries: keyed by the conversation, its running total
            total += float(entry.get("usd") or 0) if key == session else 0.0
        elif (entry.get("session") == session and entry.get("source") == "result"
              and entry.get("scope") == "conversation"):
            total += float(entry.get("usd") or 0)
    return total


def _billed(result: SessionResult, usage: RunUsage) -> list[str]:
    models = result.extra.get("billed_models")
    if isinstance(models, list) and models:
        return [str(m) for m in models]
    return sorted(m for m in usage.by_model if m)


def model_mismatch(declared: str | None, billed: Sequence[str]) -> str | None:
    """A message when the declared model is not what was billed (a legacy id billed as another)."""
    if not declared or not billed:
        return None
    if any(declared in m or m in declared for m in billed):
        return None
    return f"declared model {declared} was billed as {', '.join(billed)}"
