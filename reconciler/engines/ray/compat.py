"""What fleet relies on in Ray beyond its public API, in one place, for the Ray versions it is tested with.

pyproject pins Ray to `TESTED` (`ray[default]>=2.60,<2.61`); tests/test_ray_compat.py checks
each assumption below against the installed Ray, so an upgrade that breaks one fails there
first, not in a fleet run.

- **The cluster's messages go to stderr.** A Ray driver prints the cluster's error messages
  ("node ... has been marked dead") on `sys.stdout`, which is fleet's output (`fleet status
  -o json`), from a thread of its own named `ray_listen_error_messages` (its log thread:
  `ray_print_logs`). Ray has no setting for where they go, so fleet does not patch Ray:
  it wraps `sys.stdout` in `RayToStderr`, which hands writes from Ray's threads to stderr
  (where an operator still sees them) and everything else to the real stdout.
- **A stop signal stays fleet's.** `ray.init` installs Ray's C++ failure handler for
  SIGTERM (it prints a stack trace, "*** SIGTERM received ... PC: @ ..."), replacing the
  loop's own handler (or the default), unless `RAY_DISABLE_FAILURE_SIGNAL_HANDLER` is set
  when Ray is imported: fleet sets it for its own processes (`before_import`).
- **A loopback cluster stays on loopback.** A driver (and a node) resolves "127.0.0.1" to the
  machine's outward IP (`ray._private.services.resolve_ip_for_localhost`), so a cluster bound
  to 127.0.0.1 would be unreachable; with `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` set before Ray
  is imported (`ray_constants.ENABLE_RAY_CLUSTER`, Ray's switch for laptops) the node's IP is
  the loopback one. That environment variable is all fleet uses: no private `ray.init`
  argument (tests/test_ray_engine.py connects a fresh driver with it and nothing else).
- **The head node is `node:__internal_head__`.** Ray gives the head node one unit of that
  resource (Ray's docs name it for placing work on the head); `fleet::controller` asks for
  a sliver of it, so losing a worker node loses no lease and no record (lease.py). Checked
  on the test cluster: the control actor runs on the head node.
"""
from __future__ import annotations

import io
import os
import sys
import threading
from typing import Any, TextIO

TESTED = ((2, 60),)  # (major, minor) of the Ray releases this code is tested with
RAY_THREADS = ("ray_listen_error_messages", "ray_print_logs")
NO_FAILURE_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"  # read by ray._private.ray_constants at import
LOOPBACK_CLUSTER = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": this node's IP is 127.0.0.1 (ray_constants)
HEAD_RESOURCE = "node:__internal_head__"  # one unit on the head node only


def tested(version: str) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) in TESTED
    except (IndexError, ValueError):
        return False


class RayToStderr(io.TextIOBase):
    """A stdout whose writes from Ray's own threads go to stderr."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out, self._err = out, err

    def _target(self) -> TextIO:
        return self._err if threading.current_thread().name in RAY_THREADS else self._out

    def write(self, s: str) -> int:
        return self._target().write(s)

    def flush(self) -> None:
        self._out.flush()
        self._err.flush()

    def fileno(self) -> int:
        return self._out.fileno()

    def isatty(self) -> bool:
        return self._out.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._out.encoding

    @property
    def buffer(self) -> Any:
        return self._out.buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def before_import() -> None:
    """The environment Ray reads when it is imported, set before fleet imports it."""
    os.environ.setdefault(NO_FAILURE_HANDLER, "1")


def keep_loopback() -> None:
    """Before Ray is imported: a driver or node of a cluster bound to 127.0.0.1 stays there."""
    os.environ.setdefault(LOOPBACK_CLUSTER, "0")


def cluster_messages_to_stderr() -> None:
    """Route Ray's driver messages to stderr from now on (once per process)."""
    if not isinstance(sys.stdout, RayToStderr):
        sys.stdout = RayToStderr(sys.stdout, sys.stderr)
