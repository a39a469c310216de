"""The dashboard's log tail: rendered like `fleet logs` (claude events as tool calls), whole lines only."""
from __future__ import annotations

from pathlib import Path

from conftest import ROOT

from reconciler.store.records import StateStore
from reconciler.ui.detail import log_tail, rendered

STREAM = ROOT / "tests" / "data" / "claude-2.1.332-stream.jsonl"


def test_the_tail_is_rendered_and_a_line_still_being_written_waits(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "home", "t")
    log = store.log_path("a")
    log.parent.mkdir(parents=True)
    log.write_bytes(STREAM.read_bytes() + b'{"type":"assistant","mess')  # the last event is half written
    raw, offset = log_tail(store, "a")
    text = rendered(raw)
    assert '{"type"' not in text  # events, not raw JSON
    assert "echo hi" in text  # the Bash tool call, as `fleet logs` shows it
    assert offset == len(STREAM.read_bytes())  # the half line is read again by the next tail
    with log.open("ab") as f:
        f.write(b"age\nplain output line\n")
    more, after = log_tail(store, "a", offset)
    assert "plain output line" in rendered(more)
    assert after == log.stat().st_size
