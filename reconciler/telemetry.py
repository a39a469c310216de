"""OpenTelemetry: a span per reconcile, a child span per action, fleet metrics, and the
trace context handed to every session it spawns (docs/telemetry.md).

Off unless `spec.telemetry.otlpEndpoint` or the standard `OTEL_EXPORTER_OTLP_*ENDPOINT`
variables name a collector. Off costs one check per reconcile and per action: nothing
of OpenTelemetry is imported, so `fleet status` and `fleet validate` start as fast as
ever. On, spans and metrics go out over OTLP/HTTP (protobuf); providers are flushed
and shut down when the CLI ends (`shutdown()`), with an atexit hook as a fallback.

Telemetry never fails a reconcile: exporting happens in the background, and a
snapshot that cannot be read is skipped.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from . import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor

    from .plan.actions import Action
    from .spec.desired import DesiredAgent
    from .spec.loader import LoadedFleet

# Attribute names: on spans, on metric points, and (the first three) in the sessions'
# OTEL_RESOURCE_ATTRIBUTES, so a session's own telemetry joins the fleet's.
FLEET, AGENT, TIER, ACTION, RESULT, PHASE = (
    "fleet.name", "fleet.agent", "fleet.tier", "fleet.action", "fleet.result", "fleet.phase")
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Blocked", "Delivered")
VERDICT = "fleet.delivery.verdict"  # Delivered, Conflicted, IntegrationFailed, OutOfScope, NothingToDeliver
RETRY = "fleet.delivery.retry"  # a failing delivery gate's one retry: flaky (passed on it) or failed (again)
FROM_ENV = "env"  # endpoint sentinel: the exporters read the OTEL_EXPORTER_OTLP_* variables
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
_DEFAULT_TIMEOUT = 5.0  # seconds per export: a dead collector must not hold the CLI up for long
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

F = TypeVar("F", bound=Callable[..., Any])


def endpoint_for(spec_endpoint: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """Where telemetry goes: the spec's endpoint (it is reviewed in git, so it wins), else
    FROM_ENV when a standard variable names one, else None (off). OTEL_SDK_DISABLED=true: off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if spec_endpoint:
        return spec_endpoint.rstrip("/")
    if any(environ.get(var) for var in _ENDPOINT_VARS):
        return FROM_ENV
    return None


def resource_attributes(fleet: str, agent: str, tier: str) -> str:
    """`fleet.name=...,fleet.agent=...,fleet.tier=...` in OTEL_RESOURCE_ATTRIBUTES syntax."""
    return ",".join(f"{k}={quote(v, safe='')}" for k, v in ((FLEET, fleet), (AGENT, agent), (TIER, tier)))


class _Off:
    """Telemetry switched off: every hook is a plain call."""

    enabled = False


OFF = _Off()


@dataclass
class _Snapshot:
    """What the observable gauges report, as of the end of the last reconcile of a fleet."""

    phases: dict[str, int] = field(default_factory=dict)
    cost: dict[tuple[str, str], float] = field(default_factory=dict)  # (agent, tier) -> USD
    budget: float | None = None  # USD left today, fleet-wide
    tier_budget: dict[str, float] = field(default_factory=dict)  # tier -> USD left today
    lines: list[tuple[str, str, float, float]] = field(default_factory=list)  # (line, unit, left, reserved)


class Telemetry:
    """Tracer and meter providers of their own (never the global ones), so tests and an
    embedding program can each have theirs."""

    enabled = True

    def __init__(self, *, span_processors: Iterable[SpanProcessor] = (),
                 metric_readers: Iterable[MetricReader] = (), endpoint: str | None = None) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        self.endpoint = endpoint
        resource = Resource.create({"service.name": "fleet", "service.version": __version__})
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for processor in span_processors:
            self.tracer_provider.add_span_processor(processor)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=list(metric_readers),
                                            shutdown_on_exit=False)
        self.tracer = self.tracer_provider.get_tracer("reconciler", __version__)
        meter = self.meter_provider.get_meter("reconciler", __version__)
        self.actions = meter.create_counter(
            "fleet.actions", unit="{action}", description="Plan actions executed, by kind and result.")
        self.duration = meter.create_histogram(
            "fleet.reconcile.duration", unit="s", description="Wall time of one reconcile pass.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS))
        meter.create_observable_gauge("fleet.sessions", [self._observe_sessions], unit="{session}",
                                      description="Agents by phase, as of the last reconcile.")
        meter.create_observable_gauge("fleet.cost", [self._observe_cost], unit="USD",
                                      description="Spend recorded per agent (all runs of its record).")
        meter.create_observable_gauge("fleet.budget.remaining", [self._observe_budget], unit="USD",
                                      description="budget.usdPerDay (and perTier) left today, UTC, after what "
                                                  "ended runs and running sessions have spent.")
        meter.create_observable_gauge("fleet.budget.left", [self._observe_lines], unit="1",
                                      description="Each budget line's limit minus spent and reserved (attribute "
                                                  "fleet.budget: budget.usdPerDay, budget.windows[0], ...; unit "
                                                  "fleet.budget.unit: usd or tokens).")
        meter.create_observable_gauge("fleet.budget.reserved", [self._observe_reserved], unit="USD",
                                      description="USD running sessions reserved on each budget line and have "
                                                  "not spent yet.")
        # the merge queue (docs/delivery.md): verdicts by kind, how long Succeeded work waited to land,
        # and the queue's length as the last plan had it
        self.deliveries = meter.create_counter(
            "fleet.delivery.verdicts", unit="{verdict}", description="Merge queue verdicts: Delivered (merges), "
            "Conflicted, IntegrationFailed, OutOfScope, NothingToDeliver.")
        self.retries = meter.create_counter(
            "fleet.delivery.retries", unit="{retry}", description="Delivery gates that failed and were run once "
            "more before anyone was blamed (fleet.delivery.retry: flaky = passed on the retry, failed = again).")
        self.to_deliver = meter.create_histogram(
            "fleet.delivery.time_to_deliver", unit="s", description="From a run's end (Succeeded) to Delivered.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS))
        meter.create_observable_gauge("fleet.delivery.queue", [self._observe_queue], unit="{agent}",
                                      description="Agents in the merge queue, as of the last reconcile's plan.")
        self._queues: dict[str, int] = {}
        self._snapshots: dict[str, _Snapshot] = {}
        self._lock = threading.Lock()

    @classmethod
    def otlp(cls, endpoint: str) -> Telemetry:
        """Export over OTLP/HTTP to `endpoint` (a base URL), or as the OTEL_* variables say."""
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        env = os.environ
        timeout = None if env.get("OTEL_EXPORTER_OTLP_TIMEOUT") else _DEFAULT_TIMEOUT
        explicit = endpoint != FROM_ENV
        processors, readers = [], []
        if env.get("OTEL_TRACES_EXPORTER", "").strip() != "none" and (
                explicit or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
            spans = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces" if explicit else None, timeout=timeout)
            processors.append(BatchSpanProcessor(spans))
        if env.get("OTEL_METRICS_EXPORTER", "").strip() != "none" and (
                explicit or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")):
            metrics = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics" if explicit else None, timeout=timeout)
            readers.append(PeriodicExportingMetricReader(metrics))
        return cls(span_processors=processors, metric_readers=readers, endpoint=endpoint)

    # -- spans and measurements ---------------------------------------------------------

    def reconcile(self, loaded: LoadedFleet, call: Callable[[], Any]) -> Any:
        """Run one reconcile pass (`call`) inside the `fleet.reconcile` span."""
        attrs = {FLEET: loaded.name}
        start = time.perf_counter()
        result_label = "error"
        try:
            with self.tracer.start_as_current_span("fleet.reconcile", attributes=attrs) as span:
                span.set_attribute(RESULT, result_label)  # until the pass returns
                result = call()
                plan = result.plan
                with self._lock:
                    self._queues[loaded.name] = sum(a.kind == "merge" for a in plan.actions)
                failed = [o for o in result.outcomes if not o.ok and not o.blocked]
                blocked = len(plan.blocked) + sum(o.blocked for o in result.outcomes)
                result_label = "failed" if failed else "blocked" if blocked else "ok"
                span.set_attributes({"fleet.actions": len(plan.actions), "fleet.applied": result.applied,
                                     "fleet.actions.failed": len(failed), "fleet.actions.blocked": blocked,
                                     RESULT: result_label})
                return result
        finally:
            self.duration.record(time.perf_counter() - start, {**attrs, RESULT: result_label})
            self._take_snapshot(loaded)

    def action(self, fleet: str, action: Action, call: Callable[[], str]) -> str:
        """Run one action inside its span; its result is counted in `fleet.actions`."""
        from opentelemetry.trace import Status, StatusCode

        from .errors import EXIT_BLOCKED, FleetError

        attrs = {FLEET: fleet, AGENT: action.agent, TIER: action.tier or "", ACTION: action.kind}
        with self.tracer.start_as_current_span(f"fleet.action.{action.kind}", attributes=attrs,
                                               record_exception=False, set_status_on_exception=False) as span:
            span.set_attribute("fleet.reason", action.reason)
            result = "error"
            try:
                message = call()
                result = "blocked" if action.kind == "blocked" else "ok"
                span.set_attribute("fleet.message", message)
                return message
            except FleetError as exc:
                result = "blocked" if exc.exit_code == EXIT_BLOCKED else "failed"
                span.set_attribute("fleet.message", exc.message)
                if result == "failed":
                    span.set_status(Status(StatusCode.ERROR, exc.message))
                raise
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
                raise
            finally:
                span.set_attribute(RESULT, result)
                self.actions.add(1, {FLEET: fleet, ACTION: action.kind, RESULT: result})

    def session_env(self, loaded: LoadedFleet, agent: DesiredAgent) -> dict[str, str]:
        """TRACEPARENT of the current span (the action's) and resource attributes naming the
        agent, so the session's own telemetry (claude's cost metrics) joins this trace."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        env: dict[str, str] = {}
        if "traceparent" in carrier:
            env["TRACEPARENT"] = carrier["traceparent"]
        if carrier.get("tracestate"):
            env["TRACESTATE"] = carrier["tracestate"]
        ours = resource_attributes(loaded.name, agent.name, agent.tier_name)
        theirs = _session_value(agent, "OTEL_RESOURCE_ATTRIBUTES")
        env["OTEL_RESOURCE_ATTRIBUTES"] = f"{theirs},{ours}" if theirs else ours  # later keys win
        defaults: dict[str, str] = {}
        if self.endpoint and self.endpoint != FROM_ENV:  # sessions inherit the variables otherwise
            defaults = {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
                        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        if agent.tier.runtime == "claude":
            env["CLAUDE_CODE_ENABLE_TELEMETRY"] = "1"
            defaults["OTEL_METRICS_EXPORTER"] = "otlp"  # claude exports nothing without an exporter named
        env.update({k: v for k, v in defaults.items() if _session_value(agent, k) is None})
        return env

    # -- observable gauges ------------------------------------------------------------

    def _take_snapshot(self, loaded: LoadedFleet) -> None:
        try:
            snapshot = _snapshot_of(loaded)
        except Exception:  # noqa: BLE001 - metrics must never fail a reconcile
            return
        with self._lock:
            self._snapshots[loaded.name] = snapshot

    def _each(self) -> list[tuple[str, _Snapshot]]:
        with self._lock:
            return list(self._snapshots.items())

    def _observe_sessions(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for fleet, snap in self._each():
            for phase, n in sorted(snap.phases.items()):
                yield Observation(n, {FLEET: fleet, PHASE: phase})

    def _observe_cost(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for fleet, snap in self._each():
            for (agent, tier), usd in sorted(snap.cost.items()):
                yield Observation(usd, {FLEET: fleet, AGENT: agent, TIER: tier})

    def _observe_budget(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for fleet, snap in self._each():
            if snap.budget is not None:
                yield Observation(snap.budget, {FLEET: fleet})
            for tier, usd in sorted(snap.tier_budget.items()):
                yield Observation(usd, {FLEET: fleet, TIER: tier})

    def _observe_lines(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for fleet, snap in self._each():
            for name, unit, left, _reserved in snap.lines:
                yield Observation(left, {FLEET: fleet, "fleet.budget": name, "fleet.budget.unit": unit})

    def _observe_reserved(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for fleet, snap in self._each():
            for name, unit, _left, reserved in snap.lines:
                if unit == "usd":
                    yield Observation(reserved, {FLEET: fleet, "fleet.budget": name})
    def _observe_queue(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        with self._lock:
            queues = sorted(self._queues.items())
        for fleet, n in queues:
            yield Observation(n, {FLEET: fleet})

    def delivery(self, fleet: str, agent: str, verdict: str, waited: float | None) -> None:
        self.deliveries.add(1, {FLEET: fleet, VERDICT: verdict})
        if verdict == "Delivered" and waited is not None:
            self.to_deliver.record(max(0.0, waited), {FLEET: fleet})

    def delivery_retry(self, fleet: str, outcome: str) -> None:
        self.retries.add(1, {FLEET: fleet, RETRY: outcome})

    def force_flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            with contextlib.suppress(Exception):  # never fail the CLI's exit over telemetry
                provider.shutdown()


def _snapshot_of(loaded: LoadedFleet) -> _Snapshot:
    """Phases, cost and budget left, from the state store as the reconcile left it."""
    from .observe.gitrepo import GitRepo
    from .observe.live import live_spend
    from .observe.snapshot import state_store
    from .plan.budget import budgets
    from .runtimes.pricing import overrides
    from .store import clock
    from .store.records import RUNNING

    store = state_store(GitRepo(loaded.repo), loaded.name)
    records = store.all()
    prices = overrides(loaded.fleet.spec.budget.prices)
    live: dict[str, tuple[float, int]] = {}
    for rec in records.values():
        if rec.phase == RUNNING:  # a running session's cost so far counts now, not once it ends
            spent = live_spend(rec, store.log_path(rec.agent), prices, store.spend_path(rec.agent))
            live[rec.agent] = (spent.usd or 0.0, spent.tokens) if spent is not None else (0.0, 0)
    snap = _Snapshot(phases=dict.fromkeys(PHASES, 0))
    for agent in loaded.agents:
        if agent.name not in records:
            snap.phases["Pending"] += 1  # declared, nothing done yet
    for rec in records.values():
        snap.phases[rec.phase] = snap.phases.get(rec.phase, 0) + 1
        snap.cost[(rec.agent, rec.tier or "")] = rec.cost_usd + live.get(rec.agent, (0.0, 0))[0]
    # what is left counts what running sessions have spent so far, as admission does: a pass that
    # observed them has the figure now, not once their run is folded into the ledger
    for line in budgets(loaded.fleet.spec, records.values(), live, clock.now()).lines:
        if line.agent_scoped:
            continue
        snap.lines.append((line.name, line.unit, line.left(""), line.reserved))
        if line.name == "budget.usdPerDay":
            snap.budget = max(0.0, line.limit - line.spent)
        elif line.name.startswith("budget.perTier.") and line.tier is not None:
            snap.tier_budget[line.tier] = max(0.0, line.limit - line.spent)
    return snap


def _session_value(agent: DesiredAgent, key: str) -> str | None:
    """What the session would see for `key` without us: the agent's env, else ours."""
    from .spec.models import FromEnv

    value = agent.env.get(key)
    if isinstance(value, FromEnv):
        return os.environ.get(value.fromEnv)
    if value is not None:
        return value
    return os.environ.get(key)


# -- where the rest of fleet hooks in ------------------------------------------------------

_installed: Telemetry | None = None
_by_endpoint: dict[str, Telemetry] = {}


def for_fleet(loaded: LoadedFleet) -> Telemetry | _Off:
    """The telemetry for this fleet file: OFF, or one exporter pipeline per endpoint."""
    if _installed is not None:
        return _installed
    endpoint = endpoint_for(loaded.fleet.spec.telemetry.otlpEndpoint)
    if endpoint is None:
        return OFF
    tel = _by_endpoint.get(endpoint)
    if tel is None:
        if not _by_endpoint:
            atexit.register(shutdown)
        tel = _by_endpoint[endpoint] = Telemetry.otlp(endpoint)
    return tel


def install(tel: Telemetry | None) -> None:
    """Use `tel` for every fleet (tests with in-memory exporters, an embedding program); None undoes it."""
    global _installed
    _installed = tel


def shutdown() -> None:
    """Flush and stop every exporter pipeline this process started (end of a CLI run)."""
    while _by_endpoint:
        _, tel = _by_endpoint.popitem()
        tel.shutdown()


def traced_reconcile(fn: F) -> F:
    """Decorate `reconcile_once(loaded, ...)`: the pass runs inside a `fleet.reconcile` span."""
    @functools.wraps(fn)
    def wrapper(loaded: LoadedFleet, *args: Any, **kwargs: Any) -> Any:
        tel = for_fleet(loaded)
        if not isinstance(tel, Telemetry):
            return fn(loaded, *args, **kwargs)
        return tel.reconcile(loaded, lambda: fn(loaded, *args, **kwargs))

    return wrapper  # type: ignore[return-value]


def traced_action(fn: F) -> F:
    """Decorate `Executor._do(self, action)`: each action runs inside its own child span."""
    @functools.wraps(fn)
    def wrapper(self: Any, action: Action) -> Any:
        tel = for_fleet(self.loaded)
        if not isinstance(tel, Telemetry):
            return fn(self, action)
        return tel.action(self.loaded.name, action, lambda: fn(self, action))

    return wrapper  # type: ignore[return-value]


def delivery(loaded: LoadedFleet, agent: str, verdict: str, waited: float | None = None) -> None:
    """Count one merge queue verdict; `waited`: seconds from the run's end to Delivered."""
    tel = for_fleet(loaded)
    if isinstance(tel, Telemetry):
        tel.delivery(loaded.name, agent, verdict, waited)


def delivery_retry(loaded: LoadedFleet, outcome: str) -> None:
    """Count one retry of failing delivery gates: `flaky` (it passed) or `failed` (again)."""
    tel = for_fleet(loaded)
    if isinstance(tel, Telemetry):
        tel.delivery_retry(loaded.name, outcome)


def session_env(loaded: LoadedFleet, agent: DesiredAgent) -> dict[str, str]:
    """Environment for a session about to start: empty when telemetry is off."""
    tel = for_fleet(loaded)
    return tel.session_env(loaded, agent) if isinstance(tel, Telemetry) else {}
