"""Delivering one notification: run the entry's command, or POST to its webhook.

The event is JSON on the command's stdin and in $FLEET_EVENT (with $FLEET_EVENT_KIND,
$FLEET_EVENT_AGENT, $FLEET_NAME); a webhook gets it as the request body. Every delivery
is bounded by the entry's timeout (a command's whole process group is killed at it). A
failure is returned in words, never raised: notifying must not break the loop.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from .. import __version__
from ..spec.durations import parse_duration
from ..spec.models import FromEnv, Notify


def target(entry: Notify) -> str:
    """The entry in a few words, for status and errors (a secret URL is named by its variable)."""
    if entry.command is not None:
        return "command " + " ".join(entry.command)[:80]
    if isinstance(entry.webhook, FromEnv):
        return f"webhook ${entry.webhook.fromEnv}"
    return f"webhook {entry.webhook}"


def deliver(entry: Notify, event: dict[str, Any], *, cwd: Path) -> str | None:
    """Send `event`; None when it was delivered, else why not."""
    body = json.dumps(event, sort_keys=True)
    timeout = parse_duration(entry.timeout)
    try:
        if entry.command is not None:
            return _run(entry.command, body, event, cwd=cwd, timeout=timeout)
        return _post(_value(entry.webhook), body, {k: _value(v) for k, v in entry.headers.items()}, timeout)
    except _Unset as exc:
        return str(exc)


class _Unset(Exception):
    pass


def _value(value: str | FromEnv | None) -> str:
    if isinstance(value, FromEnv):
        if value.fromEnv not in os.environ:
            raise _Unset(f"${value.fromEnv} is not set in the environment of fleet reconcile")
        return os.environ[value.fromEnv]
    return value or ""


def _run(argv: list[str], body: str, event: dict[str, Any], *, cwd: Path, timeout: float) -> str | None:
    env = {**os.environ, "FLEET_EVENT": body, "FLEET_EVENT_KIND": str(event.get("event")),
           "FLEET_EVENT_AGENT": str(event.get("agent") or ""), "FLEET_NAME": str(event.get("fleet"))}
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    except OSError as exc:
        return f"cannot start {argv[0]!r}: {exc.strerror or exc}"
    try:
        _, err = proc.communicate(body, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"timed out after {timeout:g}s"
    if proc.returncode != 0:
        last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
        return f"exit {proc.returncode}" + (f": {last[:200]}" if last else "")
    return None


def _post(url: str, body: str, headers: dict[str, str], timeout: float) -> str | None:
    import urllib.error  # here: `fleet status` imports this module, and urllib.request loads ssl and http
    import urllib.request

    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"fleet/{__version__}", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the operator's URL
            response.read()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"not delivered: {reason}"
    return None
