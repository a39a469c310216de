"""A scripted Anthropic Messages API server on 127.0.0.1, for running the real Claude Code CLI offline.

Test fixture, not product code. The real `claude` binary honours ANTHROPIC_BASE_URL;
pointed at this server it runs complete sessions (tool calls included) with no network.

- `POST /v1/messages[?beta=true]` is answered by the test's `script`: a function of the
  `Request` (model, system prompt, messages, tools) returning a `Reply`: `Text`,
  `ToolUse` (the CLI then runs the tool and sends a follow-up request with the
  `tool_result`), `Error` (an HTTP error with Anthropic's error JSON, e.g. 401 or 529) or
  `Stall` (accept and never answer, or answer the headers and then hang).
  Streaming requests get SSE events (message_start, content_block_start/delta/stop,
  message_delta with usage, message_stop); non-streaming ones a Message JSON.
- `POST /v1/responses` (OpenAI Responses, for codex with a custom provider) plays the same
  script: its `input` is converted to Anthropic-style messages for the helpers, a `ToolUse`
  of Bash becomes codex's `exec_command` function call, and the answer is SSE `response.*`
  events ending in `response.completed` with usage.
- `POST /v1/messages/count_tokens` gets a token count; anything else gets 404 with an
  Anthropic-style error and is logged in `unknown` so tests can see what the CLI probes.
- Every request is recorded in `requests` (including the ones to unknown paths).

Helpers on `Request` decide the next turn from the conversation: `tool_results()`,
`last_user_text()`, `first_user_text()`, `is_main_loop` (the CLI's agent loop sends its
tools; side requests such as title generation do not).
"""
from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

Json = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 100
    output_tokens: int = 10
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def as_json(self) -> Json:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens}


@dataclass(frozen=True)
class Text:
    """An assistant text turn ending the conversation turn (stop_reason end_turn)."""
    text: str
    usage: Usage = Usage()


@dataclass(frozen=True)
class ToolUse:
    """An assistant turn calling one tool (Bash {command}, Write {file_path, content}, Edit ...)."""
    name: str
    input: Json
    text: str = ""
    usage: Usage = Usage()


@dataclass(frozen=True)
class Error:
    """An HTTP error with the Anthropic error body, e.g. Error(401, "authentication_error", "invalid x-api-key")."""
    status: int
    type: str
    message: str
    should_retry: bool | None = None  # sent as `x-should-retry` when set; the CLI's SDK obeys it


@dataclass(frozen=True)
class Stall:
    """Never answer (`headers=False`: the client waits for the status line) or send 200 and the
    SSE headers and then nothing. Held until the server stops or `release` is set."""
    headers: bool = False


Reply = Text | ToolUse | Error | Stall

UNAUTHORIZED = Error(401, "authentication_error", "invalid x-api-key")
OVERLOADED = Error(529, "overloaded_error", "Overloaded")


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Json = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def messages(self) -> list[Json]:
        """The conversation as Anthropic messages (a Responses `input` is converted)."""
        if self.is_responses:
            return _from_responses_input(self.body.get("input"))
        return list(self.body.get("messages") or [])

    @property
    def system(self) -> str:
        system = self.body.get("instructions") if self.is_responses else self.body.get("system")
        if isinstance(system, list):
            return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
        return system or ""

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in self.body.get("tools") or [] if isinstance(t, dict)]

    @property
    def is_messages(self) -> bool:
        return self.method == "POST" and self.path == "/v1/messages"

    @property
    def is_responses(self) -> bool:
        return self.method == "POST" and self.path == "/v1/responses"

    @property
    def is_main_loop(self) -> bool:
        """The agent loop's requests carry its shell tool (claude: Bash, codex: exec_command);
        side requests do not."""
        return (self.is_messages or self.is_responses) and bool({"Bash", "exec_command"} & set(self.tool_names))

    @property
    def session_id(self) -> str | None:
        """The CLI's session id: claude sends `x-claude-code-session-id`, codex `session-id` (its thread id)."""
        return self.headers.get("x-claude-code-session-id") or self.headers.get("session-id")

    def _prompt_index(self) -> int:
        """Index of the last user message that is a prompt (has text, no tool_result)."""
        for i in range(len(self.messages) - 1, -1, -1):
            m = self.messages[i]
            content = m.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            types = {b.get("type") for b in blocks if isinstance(b, dict)}
            if m.get("role") == "user" and "text" in types and "tool_result" not in types:
                return i
        return -1

    def prompt(self) -> str:
        """Text of the last prompt: the task, or on a resume the message it was resumed with."""
        i = self._prompt_index()
        return _text_of(self.messages[i]) if i >= 0 else ""

    def steps_since_prompt(self) -> int:
        """Assistant turns since the last prompt: 0 for the first request of a run, +1 per tool call."""
        return sum(1 for m in self.messages[self._prompt_index() + 1:] if m.get("role") == "assistant")

    def texts(self, role: str = "user") -> list[str]:
        """All text of messages with `role`, one entry per message."""
        return [_text_of(m) for m in self.messages if m.get("role") == role]

    def first_user_text(self) -> str:
        texts = self.texts("user")
        return texts[0] if texts else ""

    def last_user_text(self) -> str:
        """Text of the last user message (tool results excluded)."""
        texts = self.texts("user")
        return texts[-1] if texts else ""

    def tool_results(self) -> list[Json]:
        """tool_result blocks of the last user message (the CLI's answer to our last tool_use)."""
        if not self.messages or self.messages[-1].get("role") != "user":
            return []
        content = self.messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]

    def all_text(self) -> str:
        """Every text and tool_result in the conversation, for `in` checks."""
        return "\n".join(_text_of(m, tool_results=True) for m in self.messages)


def _text_of(message: Json, tool_results: bool = False) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif tool_results and block.get("type") == "tool_result":
            inner = block.get("content")
            parts.append(inner if isinstance(inner, str) else
                         "\n".join(b.get("text", "") for b in inner or [] if isinstance(b, dict)))
        elif tool_results and block.get("type") == "tool_use":
            parts.append(json.dumps(block.get("input")))
    return "\n".join(parts)


def _from_responses_input(items: object) -> list[Json]:
    """OpenAI Responses `input` items as Anthropic-style messages, so one script serves both."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[Json] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            blocks = ([{"type": "text", "text": content}] if isinstance(content, str) else
                      [{"type": "text", "text": b.get("text", "")} for b in content or []
                       if isinstance(b, dict) and "text" in b])
            out.append({"role": item.get("role"), "content": blocks})
        elif kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError:
                args = {"_raw": item.get("arguments")}
            out.append({"role": "assistant", "content": [{"type": "tool_use", "id": item.get("call_id"),
                                                          "name": item.get("name"), "input": args}]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": item.get("call_id"),
                                                     "content": output if isinstance(output, str)
                                                     else json.dumps(output)}]})
    return out


Script = Callable[[Request], Reply]


def side_request_reply(req: Request) -> Reply:
    """What side requests (no tools: titles, summaries, quota probes) get by default."""
    return Text("ok", Usage(input_tokens=1, output_tokens=1))


class ModelServer:
    """Run with `with ModelServer(script) as server:`; `server.url` is the base URL for the CLI."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.unknown: list[Request] = []
        self.release = threading.Event()  # set to let stalled requests end (their connection is closed)
        self.stalled = threading.Event()  # set once a request is being stalled
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="model-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment for a claude process talking only to this server."""
        return {"ANTHROPIC_BASE_URL": self.url, "ANTHROPIC_API_KEY": "test-key",
                "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
                "DISABLE_BUG_COMMAND": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "CLAUDE_CODE_ENABLE_TELEMETRY": "0", "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"}

    def main_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.is_main_loop]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _record(self, req: Request, known: bool) -> None:
        with self._lock:
            self.requests.append(req)
            if not known:
                self.unknown.append(req)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _request(self) -> Request:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in ("x-api-key",
                                                                                               "authorization")}
                return Request(self.command, parts.path, parts.query, headers,
                               body if isinstance(body, dict) else {"_body": body})

            def do_POST(self) -> None:
                req = self._request()
                if req.path in ("/v1/messages", "/v1/responses"):
                    server._record(req, True)
                    reply = server.script(req) if req.is_main_loop else _side(server.script, req)
                    if req.is_responses:
                        self._respond(req, reply)
                    else:
                        self._reply(req, reply)
                elif req.path == "/v1/messages/count_tokens":
                    server._record(req, True)
                    self._json(200, {"input_tokens": 100})
                else:
                    server._record(req, False)
                    self._error(Error(404, "not_found_error", f"no such endpoint: {req.path}"))

            def do_GET(self) -> None:
                server._record(self._request(), False)
                self._error(Error(404, "not_found_error", f"no such endpoint: {self.path}"))

            def do_HEAD(self) -> None:
                server._record(self._request(), False)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, err: Error) -> None:
                request_id = f"req_test_{next(server._ids)}"
                self._json(err.status, {"type": "error", "error": {"type": err.type, "message": err.message},
                                        "request_id": request_id},
                           {"request-id": request_id,
                            **({} if err.should_retry is None else {"x-should-retry": str(err.should_retry).lower()})})

            def _reply(self, req: Request, reply: Reply) -> None:
                if isinstance(reply, Error):
                    self._error(reply)
                    return
                if isinstance(reply, Stall):
                    self._stall(reply)
                    return
                message_id = f"msg_test_{next(server._ids)}"
                blocks: list[Json] = []
                if reply.text:
                    blocks.append({"type": "text", "text": reply.text})
                if isinstance(reply, ToolUse):
                    blocks.append({"type": "tool_use", "id": f"toolu_test_{next(server._ids)}",
                                   "name": reply.name, "input": reply.input})
                stop_reason = "tool_use" if isinstance(reply, ToolUse) else "end_turn"
                usage = reply.usage.as_json()
                model = req.model or "claude-test"
                if not req.body.get("stream"):
                    self._json(200, {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                     "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                                     "usage": usage})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                start_usage = {**usage, "output_tokens": 1}
                self._event("message_start", {"type": "message_start", "message": {
                    "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
                for index, block in enumerate(blocks):
                    if block["type"] == "text":
                        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                            "content_block": {"type": "text", "text": ""}})
                        self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "text_delta",
                                                                      "text": block["text"]}})
                    else:
                        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                            "content_block": {**block, "input": {}}})
                        self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "input_json_delta",
                                                                      "partial_json": json.dumps(block["input"])}})
                    self._event("content_block_stop", {"type": "content_block_stop", "index": index})
                self._event("message_delta", {"type": "message_delta",
                                              "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                              "usage": {"output_tokens": usage["output_tokens"]}})
                self._event("message_stop", {"type": "message_stop"})

            def _stall(self, reply: Stall) -> None:
                server.stalled.set()
                if reply.headers:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    self.wfile.flush()
                server.release.wait()
                self.close_connection = True

            def _respond(self, req: Request, reply: Reply) -> None:
                """An OpenAI Responses answer (codex): SSE response.* events; Bash becomes exec_command."""
                if isinstance(reply, Error):
                    self._json(reply.status, {"error": {"message": reply.message, "type": reply.type,
                                                        "code": reply.type}})
                    return
                if isinstance(reply, Stall):
                    self._stall(reply)
                    return
                n = next(server._ids)
                if isinstance(reply, ToolUse):
                    name, args = reply.name, reply.input
                    if name == "Bash":
                        name, args = "exec_command", {"cmd": reply.input["command"]}
                    item: Json = {"type": "function_call", "id": f"fc_test_{n}", "call_id": f"call_test_{n}",
                                  "name": name, "arguments": json.dumps(args), "status": "completed"}
                else:
                    item = {"type": "message", "id": f"msg_test_{n}", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}
                usage = reply.usage
                response: Json = {"id": f"resp_test_{n}", "object": "response", "model": req.model,
                                  "status": "in_progress", "output": []}
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                self._event("response.created", {"type": "response.created", "response": response})
                self._event("response.output_item.added", {"type": "response.output_item.added",
                                                           "output_index": 0, "item": {**item, "content": []}
                                                           if item["type"] == "message" else item})
                if item["type"] == "message":
                    self._event("response.output_text.delta", {"type": "response.output_text.delta",
                                                               "item_id": item["id"], "output_index": 0,
                                                               "content_index": 0, "delta": reply.text})
                self._event("response.output_item.done", {"type": "response.output_item.done",
                                                          "output_index": 0, "item": item})
                self._event("response.completed", {"type": "response.completed", "response": {
                    **response, "status": "completed", "output": [item],
                    "usage": {"input_tokens": usage.input_tokens,
                              "input_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
                              "output_tokens": usage.output_tokens,
                              "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": usage.input_tokens + usage.output_tokens}}})

            def _event(self, name: str, data: Json) -> None:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

        return Handler


def _side(script: Script, req: Request) -> Reply:
    """Side requests follow the script only when it fails them all (401/529 modes)."""
    reply = script(req)
    return reply if isinstance(reply, (Error, Stall)) else side_request_reply(req)


def play(req: Request, *replies: Reply) -> Reply:
    """The reply for this point of the run: replies[steps since the prompt], the last one repeated."""
    return replies[min(req.steps_since_prompt(), len(replies) - 1)]


def workdir(req: Request) -> str | None:
    """The session's cwd, from the environment section claude puts in the first user message."""
    match = re.search(r"Primary working directory: (\S+)", req.all_text())
    return match.group(1) if match else None
