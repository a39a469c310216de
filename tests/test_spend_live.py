"""Live spend from claude's own OTLP cost metrics: the parser (pure, tables), fleet's receiver
(a real HTTP server on 127.0.0.1, real requests, JSON, protobuf and chunked bodies) and what
observe/live.py makes of the spend file it writes. The exports in tests/data were captured from
claude 2.1.332 (http/json and http/protobuf) after a turn of 1,000 input and 40,000 output tokens
of sonnet 4.5 ($0.603). The real CLI runs are in test_spend_e2e.py.
"""
from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.act.spend_receiver import SpendReceiver, _from_protobuf, claude_env, forward_headers, forward_target
from reconciler.observe.live import live_spend
from reconciler.runtimes.otlp_cost import COST, SessionSpend
from reconciler.store.records import SessionRecord

DATA = Path(__file__).parent / "data"
EXPORT = json.loads((DATA / "claude-2.1.332-otlp-metrics.json").read_text())
EXPORT_PB = (DATA / "claude-2.1.332-otlp-metrics.pb").read_bytes()
SID = "11111111-2222-3333-4444-555555555555"


def _cost_export(session: str, value: float, temporality: int, start: str = "1") -> dict:
    point = {"attributes": [{"key": "session.id", "value": {"stringValue": session}},
                            {"key": "model", "value": {"stringValue": "claude-sonnet-4-5-20250929"}}],
             "startTimeUnixNano": start, "asDouble": value}
    return {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": COST, "sum": {"aggregationTemporality": temporality, "dataPoints": [point]}}]}]}]}


@pytest.mark.parametrize("exports, expected", [
    ([EXPORT], {SID: {"usd": 0.603, "tokens": 41_000}}),
    ([_from_protobuf(EXPORT_PB)], {SID: {"usd": 0.603, "tokens": 41_000}}),  # the same, as protobuf
    # deltas add up (what claude exports); a cumulative stream's latest value stands
    ([_cost_export("s", 0.25, 1), _cost_export("s", 0.5, 1)], {"s": {"usd": 0.75, "tokens": 0}}),
    ([_cost_export("s", 0.25, 2), _cost_export("s", 0.5, 2)], {"s": {"usd": 0.5, "tokens": 0}}),
    ([_cost_export("s", 0.25, 2, "1"), _cost_export("s", 0.5, 2, "2")], {"s": {"usd": 0.75, "tokens": 0}}),
    ([_cost_export("a", 0.1, 1), _cost_export("b", 0.2, 1)], {"a": {"usd": 0.1, "tokens": 0},
                                                              "b": {"usd": 0.2, "tokens": 0}}),
    ([{"resourceMetrics": "junk"}, {}], {}),
])
def test_cost_and_tokens_per_session(exports: list[dict], expected: dict) -> None:
    spend = SessionSpend()
    for export in exports:
        spend.add(export)
    assert spend.sessions() == {s: {"usd": pytest.approx(v["usd"]), "tokens": v["tokens"]}
                                for s, v in expected.items()}


@pytest.mark.parametrize("env, target", [
    ({}, None),
    ({"CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_METRICS_EXPORTER": "otlp"}, None),  # no endpoint: nowhere
    ({"CLAUDE_CODE_ENABLE_TELEMETRY": "0", "OTEL_METRICS_EXPORTER": "otlp",
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ({"CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_METRICS_EXPORTER": "otlp",
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, ("http://c:4318/v1/metrics", "http/protobuf")),
    ({"CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_METRICS_EXPORTER": "console,otlp",
      "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/m", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
     ("http://c:4318/m", "http/json")),
    ({"CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_METRICS_EXPORTER": "otlp",
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),
])
def test_where_the_sessions_metrics_would_have_gone(env: dict[str, str], target: object) -> None:
    assert forward_target(env) == target


def test_claude_is_told_to_export_its_metrics_to_the_receiver_every_second() -> None:
    env = claude_env({"OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "60000",
                      "NO_PROXY": "example.com", "KEEP": "x"}, "http://127.0.0.1:9/v1/metrics")
    assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1" and env["OTEL_METRICS_EXPORTER"] == "console,otlp"
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://127.0.0.1:9/v1/metrics"
    assert env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == "http/json"
    assert env["OTEL_METRIC_EXPORT_INTERVAL"] == "1000" and env["KEEP"] == "x"
    assert env["NO_PROXY"] == "example.com,127.0.0.1" and env["no_proxy"] == "127.0.0.1"
    assert claude_env({"OTEL_METRIC_EXPORT_INTERVAL": "250"}, "u")["OTEL_METRIC_EXPORT_INTERVAL"] == "250"


def _post(receiver: SpendReceiver, body: bytes, content_type: str, *, chunked: bool = False) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.server_address[1], timeout=10)
    try:
        if chunked:  # how claude 2.1.197 sends its exports
            conn.request("POST", "/v1/metrics", body=iter([body[:100], body[100:]]),
                         headers={"Content-Type": content_type}, encode_chunked=True)
        else:
            conn.request("POST", "/v1/metrics", body=body, headers={"Content-Type": content_type})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def receivers(tmp_path: Path):
    made: list[SpendReceiver] = []

    def make(name: str, forward: tuple[str, str] | None = None) -> SpendReceiver:
        receiver = SpendReceiver(tmp_path / "live" / f"{name}.json", forward=forward)
        receiver.start()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def test_the_receiver_writes_what_each_export_says_and_forwards_it(receivers) -> None:
    collector = receivers("collector")  # where the session's metrics were going (fleet's telemetry, say)
    receiver = receivers("solo", forward=(collector.endpoint, "http/protobuf"))
    assert receiver.server_address[0] == "127.0.0.1"
    assert _post(receiver, json.dumps(EXPORT).encode(), "application/json") == 200
    assert _post(receiver, EXPORT_PB, "application/x-protobuf", chunked=True) == 200
    written = json.loads(receiver.spend_file.read_text())
    assert written["exports"] == 2 and written["sessions"][SID]["usd"] == pytest.approx(2 * 0.603)
    # forwarded as protobuf, both times
    assert json.loads(collector.spend_file.read_text())["sessions"][SID]["usd"] == pytest.approx(2 * 0.603)
    assert _post(receiver, b"not json", "application/json") == 400


def test_forwarded_exports_carry_the_sessions_otlp_headers(receivers) -> None:
    assert forward_headers({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0k,x-team = auth,junk"}) == {
        "authorization": "Bearer t0k", "x-team": "auth"}
    assert forward_headers({"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "b=2"}) == {
        "b": "2"}
    seen: list[dict[str, str]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        receiver = SpendReceiver(receivers("x").spend_file.with_name("y.json"),
                                 forward=(f"http://127.0.0.1:{collector.server_address[1]}/v1/metrics", "http/json"),
                                 headers={"authorization": "Bearer t0k"})
        receiver.start()
        try:
            assert _post(receiver, json.dumps(EXPORT).encode(), "application/json") == 200
        finally:
            receiver.close()
    finally:
        collector.shutdown()
        collector.server_close()
    assert [(h["authorization"], h["content-type"]) for h in seen] == [("Bearer t0k", "application/json")]


def _rec(**kw: object) -> SessionRecord:
    base = {"agent": "solo", "fleet": "t", "runtime": "claude", "model": "claude-sonnet-4-5-20250929",
            "session_id": SID, "pid": 4242, "started_at": "2026-01-01T10:00:00+00:00"}
    return SessionRecord(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("written, log_usd, expected", [
    ({"pid": 4242, "sessions": {SID: {"usd": 0.606, "tokens": 42_000}}}, 0.006, (0.606, "otlp")),
    ({"pid": 4242, "sessions": {SID: {"usd": 0.001, "tokens": 10}}}, 0.006, (0.006, "log")),  # never less
    ({"pid": 999, "sessions": {SID: {"usd": 0.606, "tokens": 1}}}, 0.006, (0.006, "log")),  # an earlier run's
    ({"pid": 4242, "sessions": {"other": {"usd": 0.606, "tokens": 1}}}, 0.006, (0.006, "log")),
    ({"pid": 4242, "sessions": {SID: {"usd": 0.606, "tokens": 1}}}, None, (0.606, "otlp")),  # nothing in the log
])
def test_live_spend_is_the_larger_of_the_exported_and_the_logged_figure(
        tmp_path: Path, written: dict, log_usd: float | None, expected: tuple[float, str]) -> None:
    log, spend = tmp_path / "solo.log", tmp_path / "live.json"
    lines = ["--- fleet: start ...\n"]
    if log_usd is not None:  # one assistant event of 2,000 input tokens ($0.006)
        lines.append(json.dumps({"type": "assistant", "message": {
            "id": "m1", "model": "claude-sonnet-4-5-20250929",
            "usage": {"input_tokens": round(log_usd / 3e-6), "output_tokens": 0}}}) + "\n")
    log.write_text("".join(lines))
    spend.write_text(json.dumps(written))
    found = live_spend(_rec(), log, (), spend)
    assert found is not None and (found.usd, found.source) == (pytest.approx(expected[0]), expected[1])
