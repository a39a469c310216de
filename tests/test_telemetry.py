"""OpenTelemetry: span and metric structure (in-memory SDK exporters), trace context in the
sessions' environment, a real OTLP/HTTP receiver on 127.0.0.1, and off means not imported."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import agents
import pytest
from conftest import ROOT, fleet, wait_until, write_fleet
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from reconciler import telemetry
from reconciler.control.converge import reconcile_once
from reconciler.spec.loader import load_fleet


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide where telemetry goes; nothing inherited, and 127.0.0.1 never via a proxy."""
    for key in list(os.environ):
        if key.startswith("OTEL_") or key.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def memory() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tel = telemetry.Telemetry(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader])
    telemetry.install(tel)
    yield spans, reader
    telemetry.install(None)
    tel.shutdown()


def _fleet(repo: Path, *agent_lines: str, extra: str = "", max_running: int | None = None) -> Path:
    caps = f"\n  concurrency: {{maxRunning: {max_running}}}" if max_running else ""
    body = "\n".join(agent_lines)
    return write_fleet(repo, f"apiVersion: fleet/v1alpha1\nkind: Fleet\nmetadata: {{name: t}}\nspec:\n"
                             f"  tiers: {{local: {{runtime: command}}}}{caps}\n{extra}  agents:\n{body}\n")


def _agent(name: str, script: Path, *args: str, env: str = "") -> str:
    lines = f"    - name: {name}\n      tier: local\n      command: {agents.argv(script, *args)}\n"
    return lines + (f"      env: {env}\n" if env else "")


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
                  key=lambda s: s.start_time or 0)


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _value(points: list[Any], **attrs: str) -> Any:
    match = [p for p in points if all(p.attributes.get(k.replace("_", ".")) == v for k, v in attrs.items())]
    assert len(match) == 1, (attrs, [dict(p.attributes) for p in points])
    return match[0]


def test_reconcile_span_has_one_child_span_per_action(repo: Path, memory) -> None:
    spans_out, _ = memory
    script = agents.install(repo.parent)
    path = _fleet(repo, _agent("a", script, "sleep", "30"), _agent("b", script, "sleep", "30"), max_running=1)
    result = reconcile_once(load_fleet(path), confirm=lambda plan: True)
    assert [(a.kind, a.agent) for a in result.plan.actions] == [
        ("create-worktree", "a"), ("spawn", "a"), ("create-worktree", "b"), ("wait", "b")]
    spans = list(spans_out.get_finished_spans())
    [root] = [s for s in spans if s.name == "fleet.reconcile"]
    assert root.parent is None
    assert root.attributes["fleet.name"] == "t" and root.attributes["fleet.actions"] == 4
    assert root.attributes["fleet.result"] == "ok" and root.attributes["fleet.applied"] is True
    children = _children(spans, root)
    assert [s.name for s in children] == ["fleet.action.create-worktree", "fleet.action.spawn",
                                          "fleet.action.create-worktree", "fleet.action.wait"]
    assert [(s.attributes["fleet.agent"], s.attributes["fleet.action"]) for s in children] == [
        ("a", "create-worktree"), ("a", "spawn"), ("b", "create-worktree"), ("b", "wait")]
    for span in children:
        assert span.context.trace_id == root.context.trace_id
        assert span.attributes["fleet.name"] == "t" and span.attributes["fleet.tier"] == "local"
        assert span.attributes["fleet.result"] == "ok" and span.attributes["fleet.reason"]
    assert "maxRunning=1" in children[3].attributes["fleet.reason"]


def test_metrics_count_actions_sessions_cost_and_budget(repo: Path, memory) -> None:
    _, reader = memory
    script = agents.install(repo.parent)
    path = _fleet(repo, _agent("paid", script, "cost", "1.25"), _agent("idle", script, "sleep", "30"),
                  extra="  budget: {usdPerDay: 5}\n")
    loaded = load_fleet(path)
    reconcile_once(loaded, confirm=lambda plan: True)
    exit_file = repo / ".git" / "fleet" / "state" / "t" / "paid.exit.json"
    wait_until(exit_file.exists)
    reconcile_once(loaded, confirm=lambda plan: True)  # folds the finished run and its cost in
    points = _points(reader)
    assert _value(points["fleet.actions"], fleet_name="t", fleet_action="create-worktree", fleet_result="ok").value == 2
    assert _value(points["fleet.actions"], fleet_action="spawn", fleet_result="ok").value == 2
    durations = _value(points["fleet.reconcile.duration"], fleet_name="t", fleet_result="ok")
    assert durations.count == 2 and durations.sum > 0
    assert _value(points["fleet.sessions"], fleet_phase="Running").value == 1
    assert _value(points["fleet.sessions"], fleet_phase="Succeeded").value == 1
    assert _value(points["fleet.sessions"], fleet_phase="Failed").value == 0
    assert _value(points["fleet.cost"], fleet_agent="paid", fleet_tier="local").value == pytest.approx(1.25)
    assert _value(points["fleet.cost"], fleet_agent="idle", fleet_tier="local").value == 0
    assert _value(points["fleet.budget.remaining"], fleet_name="t").value == pytest.approx(3.75)


def test_a_failed_action_is_an_error_span_and_counted_as_failed(repo: Path, memory) -> None:
    spans_out, reader = memory
    script = agents.install(repo.parent)
    path = _fleet(repo, _agent("a", script, "sleep", "30", env="{TOKEN: {fromEnv: FLEET_TEST_UNSET_VARIABLE}}"))
    result = reconcile_once(load_fleet(path), confirm=lambda plan: True)
    assert [o.ok for o in result.outcomes] == [True, False]
    spans = list(spans_out.get_finished_spans())
    [spawn] = [s for s in spans if s.name == "fleet.action.spawn"]
    assert spawn.attributes["fleet.result"] == "failed"
    assert spawn.status.status_code == StatusCode.ERROR and "FLEET_TEST_UNSET_VARIABLE" in spawn.status.description
    [root] = [s for s in spans if s.name == "fleet.reconcile"]
    assert root.attributes["fleet.result"] == "failed" and root.attributes["fleet.actions.failed"] == 1
    assert _value(_points(reader)["fleet.actions"], fleet_action="spawn", fleet_result="failed").value == 1


def test_spawned_session_gets_traceparent_of_its_action_span(repo: Path, memory) -> None:
    spans_out, _ = memory
    script = agents.install(repo.parent)
    path = _fleet(repo, _agent("a", script, "env", "30"))
    reconcile_once(load_fleet(path), confirm=lambda plan: True)
    env_file = repo / ".fleet" / "worktrees" / "a" / "env.json"
    env = json.loads(wait_until(lambda: env_file.exists() and env_file.read_text()))
    spans = list(spans_out.get_finished_spans())
    [root] = [s for s in spans if s.name == "fleet.reconcile"]
    [spawn] = [s for s in spans if s.name == "fleet.action.spawn"]
    version, trace_id, parent_id, flags = env["TRACEPARENT"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == root.context.trace_id
    assert int(parent_id, 16) == spawn.context.span_id  # the session is a child of its spawn action
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "fleet.name=t,fleet.agent=a,fleet.tier=local"
    assert "CLAUDE_CODE_ENABLE_TELEMETRY" not in env  # only the claude runtime reads it


def test_claude_sessions_get_telemetry_switched_on_and_keep_their_own_attributes(repo: Path) -> None:
    path = write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {lead: {runtime: claude, model: opus}}
          telemetry: {otlpEndpoint: "http://127.0.0.1:4318/"}
          agents:
            - name: review
              tier: lead
              prompt: review the code
              env: {OTEL_RESOURCE_ATTRIBUTES: team=auth}
    """)
    loaded = load_fleet(path)
    tel = telemetry.Telemetry(endpoint=telemetry.endpoint_for(loaded.fleet.spec.telemetry.otlpEndpoint))
    try:
        with tel.tracer.start_as_current_span("fleet.action.spawn") as span:
            env = tel.session_env(loaded, loaded.agents[0])
        assert env["TRACEPARENT"].startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")
        assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1" and env["OTEL_METRICS_EXPORTER"] == "otlp"
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == "team=auth,fleet.name=t,fleet.agent=review,fleet.tier=lead"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    finally:
        tel.shutdown()


def test_endpoint_comes_from_the_spec_then_the_standard_variables() -> None:
    assert telemetry.endpoint_for(None, {}) is None
    assert telemetry.endpoint_for("http://127.0.0.1:4318/", {}) == "http://127.0.0.1:4318"
    assert telemetry.endpoint_for(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == telemetry.FROM_ENV
    assert telemetry.endpoint_for(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x"}) == telemetry.FROM_ENV
    assert telemetry.endpoint_for("http://127.0.0.1:4318", {"OTEL_SDK_DISABLED": "true"}) is None


def test_an_endpoint_that_is_not_an_http_url_is_invalid(repo: Path) -> None:
    write_fleet(repo, """
        apiVersion: fleet/v1alpha1
        kind: Fleet
        metadata: {name: t}
        spec:
          tiers: {local: {runtime: command}}
          telemetry: {otlpEndpoint: "127.0.0.1:4318"}
    """)
    proc = fleet("validate", "fleet.yaml", cwd=repo)
    assert proc.returncode == 1
    assert "fleet.yaml:6:" in proc.stderr and "not an http(s) URL" in proc.stderr


def test_telemetry_off_imports_no_opentelemetry_and_sets_no_trace_variables(repo: Path) -> None:
    script = agents.install(repo.parent)
    _fleet(repo, _agent("a", script, "env", "30"))
    probe = ("import runpy, sys\n"
             "sys.argv = ['fleet', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('reconciler.cli.main', run_name='__main__')\n"
             "except SystemExit as exc:\n    code = exc.code\n"
             "print(code, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    for args in (["validate", "fleet.yaml"], ["status", "fleet.yaml"], ["apply", "fleet.yaml", "--yes"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=repo, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "COLUMNS": "200"}, check=False)
        assert proc.stdout.splitlines()[-1] == "0 []", (args, proc.stdout, proc.stderr)
    env_file = repo / ".fleet" / "worktrees" / "a" / "env.json"
    env = json.loads(wait_until(lambda: env_file.exists() and env_file.read_text()))
    assert not {"TRACEPARENT", "OTEL_RESOURCE_ATTRIBUTES", "CLAUDE_CODE_ENABLE_TELEMETRY"} & set(env)


class _Collector(ThreadingHTTPServer):
    """A minimal OTLP/HTTP receiver: decodes the protobuf export requests it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.spans: list[Any] = []
        self.metrics: list[Any] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
            ExportMetricsServiceResponse,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            traces = ExportTraceServiceRequest.FromString(body)
            self.server.spans += [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
            reply = ExportTraceServiceResponse().SerializeToString()
        elif self.path == "/v1/metrics":
            metrics = ExportMetricsServiceRequest.FromString(body)
            self.server.metrics += [m for rm in metrics.resource_metrics for sm in rm.scope_metrics
                                    for m in sm.metrics]
            reply = ExportMetricsServiceResponse().SerializeToString()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _attr(kvs: Any, key: str) -> Any:
    for kv in kvs:
        if kv.key == key:
            return getattr(kv.value, kv.value.WhichOneof("value"))
    return None


def test_fleet_apply_exports_over_otlp_http_and_the_session_joins_the_trace(repo: Path, collector: _Collector) -> None:
    script = agents.install(repo.parent)
    _fleet(repo, _agent("a", script, "env", "30"), extra=f"  telemetry: {{otlpEndpoint: \"{collector.endpoint}\"}}\n")
    proc = fleet("apply", "fleet.yaml", "--yes", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the CLI flushed before exiting: everything has arrived by now
    [root] = [s for s in collector.spans if s.name == "fleet.reconcile"]
    assert _attr(root.attributes, "fleet.name") == "t" and _attr(root.attributes, "fleet.actions") == 2
    children = [s for s in collector.spans if s.parent_span_id == root.span_id]
    assert sorted(s.name for s in children) == ["fleet.action.create-worktree", "fleet.action.spawn"]
    assert {_attr(s.attributes, "fleet.agent") for s in children} == {"a"}
    names = {m.name for m in collector.metrics}
    assert {"fleet.reconcile.duration", "fleet.actions", "fleet.sessions", "fleet.cost"} <= names
    [actions] = [m for m in collector.metrics if m.name == "fleet.actions"]
    assert sum(p.as_int for p in actions.sum.data_points) == 2
    env_file = repo / ".fleet" / "worktrees" / "a" / "env.json"
    env = json.loads(wait_until(lambda: env_file.exists() and env_file.read_text()))
    assert env["TRACEPARENT"].split("-")[1] == root.trace_id.hex()
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == collector.endpoint
    assert "fleet.agent=a" in env["OTEL_RESOURCE_ATTRIBUTES"]


def test_module_import_is_cheap() -> None:
    """reconcile.py imports telemetry; that must not pull in OpenTelemetry."""
    code = "import reconciler.control.converge, sys; print([m for m in sys.modules if m.startswith('opentelemetry')])"
    proc = subprocess.run([sys.executable, "-c", code],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_delivery_metrics_queue_length_verdicts_and_time_to_deliver(repo: Path, memory) -> None:
    """The merge queue's metrics (docs/delivery.md "Metrics"): two finished agents are queued
    together and both land (two merges, each with its time from Succeeded to Delivered)."""
    _, reader = memory
    script = agents.install(repo.parent)
    flag = repo.parent / "failed-once"  # the gate fails on its first run only: one flaky retry
    gate = (f"  gates: {{tests: {{run: 'test -f {flag} || {{ touch {flag}; exit 1; }}', timeout: 30s}}}}\n"
            "  delivery: {into: integration, gates: [tests]}\n")
    path = _fleet(repo, _agent("x1", script, "commit"), _agent("x2", script, "commit"), extra=gate)
    loaded = load_fleet(path)
    reconcile_once(loaded, confirm=lambda plan: True)
    for name in ("x1", "x2"):
        wait_until((repo / ".git" / "fleet" / "state" / "t" / f"{name}.exit.json").exists)
    result = reconcile_once(loaded, confirm=lambda plan: True)
    assert sum(a.kind == "merge" for a in result.plan.actions) == 2
    points = _points(reader)
    assert _value(points["fleet.delivery.queue"], fleet_name="t").value == 2
    assert _value(points["fleet.delivery.verdicts"], fleet_name="t", fleet_delivery_verdict="Delivered").value == 2
    assert _value(points["fleet.delivery.retries"], fleet_name="t", fleet_delivery_retry="flaky").value == 1
    waited = _value(points["fleet.delivery.time_to_deliver"], fleet_name="t")
    assert waited.count == 2 and waited.sum >= 0
    assert _value(points["fleet.sessions"], fleet_phase="Delivered").value == 2
    reconcile_once(loaded, confirm=lambda plan: True)
    assert _value(_points(reader)["fleet.delivery.queue"], fleet_name="t").value == 0
