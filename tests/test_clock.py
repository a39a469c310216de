"""The injected clock (store/clock.py): FLEET_CLOCK_OFFSET moves every "now" fleet reads."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconciler.errors import FleetError
from reconciler.store import clock
from reconciler.store.records import now_iso


def test_the_offset_moves_now_and_the_times_records_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.ENV, "600.5")
    before = datetime.now(timezone.utc)
    moved, stamped = clock.now(), datetime.fromisoformat(now_iso())
    after = datetime.now(timezone.utc)
    shift = timedelta(seconds=600.5)
    assert before + shift <= moved <= after + shift
    assert before + shift - timedelta(milliseconds=1) <= stamped <= after + shift  # ms resolution
    assert moved.utcoffset() == timedelta(0)


def test_no_offset_is_the_real_clock_and_a_bad_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.ENV, raising=False)
    assert clock.offset() == 0.0
    monkeypatch.setenv(clock.ENV, "10m")
    with pytest.raises(FleetError, match="not a number of seconds"):
        clock.now()
