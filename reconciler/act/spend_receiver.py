"""fleet's OTLP/HTTP receiver for one claude session's own cost metrics (docs/operations.md "Live spend").

The session host (act/session_host.py) runs one for each claude run it hosts: bound to
127.0.0.1 on a free port before claude starts, serving while claude runs, closed before
the exit file is written. claude gets the environment that sends its metrics here
(`claude_env`): telemetry on, OTLP metrics over `http/json` to this receiver, exported
every second. Each export's `claude_code.cost.usage` and `claude_code.token.usage`
points are folded per `session.id` (runtimes/otlp_cost.py) and written to the run's
spend file (`<state>/live/<agent>.json`, atomically) so observe/live.py reads the cost
claude itself computed, within about a second of the model's response ending, not at
exit. Its lifetime is the session's: nothing to restart when fleet or its loop restarts,
and every port belongs to one run.

Exports the session would have sent anyway (fleet's `spec.telemetry` or the operator's
own OTEL_* variables) are forwarded as received (`http/json`) or converted to protobuf
(`http/protobuf`, with the opentelemetry-proto classes) to where they were going, with
the OTEL_EXPORTER_OTLP_[METRICS_]HEADERS the session's exporter would have sent. A
session whose metrics go over gRPC is left alone: its live spend is read from its log.
"""
from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..runtimes.otlp_cost import SessionSpend
from ..store import clock

EXPORT_INTERVAL_MS = 1000  # claude's default is 60 s: a cap would be crossed a minute late
_JSON, _PROTOBUF = "application/json", "application/x-protobuf"
_FORWARD_TIMEOUT = 5.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def forward_headers(env: Mapping[str, str]) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_[METRICS_]HEADERS (`key=value,...`, values URL-encoded), as the session's
    exporter would have sent them: an authenticated collector still takes the forwarded exports."""
    raw = env.get("OTEL_EXPORTER_OTLP_METRICS_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return headers


def forward_target(env: Mapping[str, str]) -> tuple[str, str] | None | bool:  # False, never True
    """Where the session's metrics would have gone without fleet: (URL, protocol); None: nowhere;
    False: over gRPC, which this receiver does not speak (fleet then leaves the session's
    telemetry alone)."""
    exporters = {e.strip() for e in env.get("OTEL_METRICS_EXPORTER", "").split(",")}
    if not _truthy(env.get("CLAUDE_CODE_ENABLE_TELEMETRY")) or "otlp" not in exporters:
        return None
    protocol = (env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip()
    url = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if not url and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        url = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/metrics"
    if not url:
        return None
    if protocol == "grpc":
        return False
    return url, protocol


def claude_env(env: Mapping[str, str], endpoint: str) -> dict[str, str]:
    """`env` with claude's metrics sent to `endpoint` (this receiver's /v1/metrics) every second."""
    out = dict(env)
    exporters = [e.strip() for e in env.get("OTEL_METRICS_EXPORTER", "").split(",") if e.strip() and e != "none"]
    out["CLAUDE_CODE_ENABLE_TELEMETRY"] = "1"
    out["OTEL_METRICS_EXPORTER"] = ",".join(exporters if "otlp" in exporters else [*exporters, "otlp"])
    out["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = endpoint
    out["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] = "http/json"
    try:
        asked = int(env.get("OTEL_METRIC_EXPORT_INTERVAL", ""))
    except ValueError:
        asked = EXPORT_INTERVAL_MS
    out["OTEL_METRIC_EXPORT_INTERVAL"] = str(max(100, min(asked, EXPORT_INTERVAL_MS)))
    for key in ("NO_PROXY", "no_proxy"):  # loopback never through a proxy
        hosts = [h for h in env.get(key, "").split(",") if h]
        out[key] = ",".join(hosts if "127.0.0.1" in hosts else [*hosts, "127.0.0.1"])
    return out


class SpendReceiver(ThreadingHTTPServer):
    """Receives one session's OTLP metric exports on 127.0.0.1 and writes its spend file."""

    daemon_threads = True

    def __init__(self, spend_file: Path, forward: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spend_file = spend_file
        self.forward = forward
        self.headers = dict(headers or {})  # sent with each forwarded export
        self.spend = SessionSpend()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._forward_failed = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/metrics"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="fleet-spend-receiver", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
        self.server_close()

    def received(self, export: dict[str, Any], body: bytes, content_type: str) -> None:
        with self._lock:
            self.spend.add(export)
            data = {"pid": os.getpid(), "updatedAt": clock.now_iso(), "exports": self.spend.exports,
                    "sessions": self.spend.sessions()}
            self.spend_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.spend_file.with_name(f".{self.spend_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.spend_file)
        if self.forward is not None:
            self._forward(export, body, content_type)

    def _forward(self, export: dict[str, Any], body: bytes, content_type: str) -> None:
        assert self.forward is not None
        url, protocol = self.forward
        try:
            if protocol == "http/json":
                data, kind = (body, _JSON) if content_type == _JSON else (json.dumps(export).encode(), _JSON)
            else:
                data, kind = _protobuf(export), _PROTOBUF
            request = urllib.request.Request(url, data=data, headers={**self.headers, "Content-Type": kind},
                                             method="POST")
            with urllib.request.urlopen(request, timeout=_FORWARD_TIMEOUT) as reply:  # noqa: S310 - an OTLP URL
                reply.read()
        except Exception as exc:  # noqa: BLE001 - telemetry never fails a session
            if not self._forward_failed:  # once, in the session log (the host's stderr)
                self._forward_failed = True
                print(f"fleet: forwarding claude's metrics to {url} failed: {exc}", file=sys.stderr, flush=True)


def _protobuf(export: dict[str, Any]) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    message = json_format.ParseDict(export, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
    return bytes(message.SerializeToString())


def _from_protobuf(body: bytes) -> dict[str, Any]:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    return dict(json_format.MessageToDict(ExportMetricsServiceRequest.FromString(body)))


class _Handler(BaseHTTPRequestHandler):
    server: SpendReceiver
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self._body()
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        content_type = (self.headers.get("Content-Type") or _JSON).split(";")[0].strip().lower()
        if self.path.split("?")[0] != "/v1/metrics":
            self._reply(404, content_type)
            return
        try:
            export = _from_protobuf(body) if content_type == _PROTOBUF else json.loads(body or b"{}")
        except Exception:  # noqa: BLE001 - a body we cannot read is the sender's problem, not the session's
            self._reply(400, content_type)
            return
        if isinstance(export, dict):
            self.server.received(export, body, content_type)
        self._reply(200, content_type)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # claude 2.1.197 sends chunks
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, content_type: str) -> None:
        # an empty ExportMetricsServiceResponse: no partial success to report
        data = b"" if content_type == _PROTOBUF else b"{}"
        self.send_response(status)
        self.send_header("Content-Type", _PROTOBUF if content_type == _PROTOBUF else _JSON)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # the session log is the agent's
        pass
