"""The driver's side of Ray: connecting, and the fleet's named session actors.

Every `import ray` of fleet is in this package, and runs only for a fleet whose
spec.placement.engine is `ray`: the default install does not need Ray at all.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import FleetError
from ...spec.loader import LoadedFleet
from . import compat
from .actor import Launch, SessionActor, SessionConfig

PROBE_TIMEOUT = 2.0  # seconds all actors together get to answer `status` before counting as unplaced
CALL_TIMEOUT = 120.0  # seconds for one method call on a placed actor (git push, clone, stop)
_INSTALL_HINT = "install it on this machine and every node: pip install 'fleet-reconciler[ray]'"


@dataclass(frozen=True)
class Probe:
    """One named actor as the driver sees it now."""

    handle: Any
    status: dict[str, Any] | None  # None: not answering (not placed yet, or its node is unreachable)


def namespace(loaded: LoadedFleet) -> str:
    return loaded.fleet.spec.placement.namespace or f"fleet-{loaded.name}"


def connect(loaded: LoadedFleet) -> ModuleType:
    """`ray`, connected to the fleet's cluster (once per process; the control loop reuses it)."""
    address = loaded.fleet.spec.placement.address or os.environ.get("RAY_ADDRESS") or "auto"
    return connect_to(address, namespace(loaded))


def connect_to(address: str, ns: str) -> ModuleType:
    """`ray`, connected to the cluster at `address` in namespace `ns` (once per process)."""
    if address == "auto":
        address = _started_here() or address
    if _is_loopback(address) and "ray" not in sys.modules:
        compat.keep_loopback()  # else Ray connects to this machine's outward IP instead (compat.py)
    compat.before_import()  # no C++ stack trace for the loop's SIGTERM (compat.py)
    try:
        import ray
    except ImportError:
        raise FleetError("placement.engine ray needs Ray, which is not installed", hint=_INSTALL_HINT) from None
    if ray.is_initialized():
        return ray
    if address != "auto" and not _reachable(address):
        # ray.init would retry for minutes; an unreachable cluster is a plain error
        raise FleetError(f"cannot connect to the Ray cluster at {address}: nothing answers there",
                         hint="start it (docs/scale-out.md), or fix spec.placement.address")
    kwargs: dict[str, Any] = {"address": address, "namespace": ns, "logging_level": logging.ERROR,
                              "log_to_driver": False}
    compat.cluster_messages_to_stderr()  # Ray prints the cluster's messages on stdout, which is fleet's
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FleetError(f"cannot connect to the Ray cluster at {address}: {exc}",
                         hint="start it (docs/scale-out.md), or set spec.placement.address "
                              "(host:port of its GCS, or ray://host:10001)") from None
    return ray


def sessions(ray: ModuleType, ns: str) -> dict[str, Any]:
    """The fleet's named actors: agent name -> handle."""
    found: dict[str, Any] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != ns or "::" in entry["name"]:  # fleet's own actors (lease.py, locks.py)
            continue
        try:
            found[entry["name"]] = ray.get_actor(entry["name"], namespace=ns)
        except ValueError:  # died between the listing and the lookup
            continue
    return found


def probe(ray: ModuleType, handles: dict[str, Any], *, timeout: float = PROBE_TIMEOUT) -> dict[str, Probe]:
    """Ask every actor for its status at once; dead ones are left out (their node or process is gone)."""
    if not handles:
        return {}
    refs = {name: h.status.remote() for name, h in handles.items()}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    done = set(ready)
    out: dict[str, Probe] = {}
    for name, ref in refs.items():
        if ref not in done:
            out[name] = Probe(handles[name], None)
            continue
        try:
            out[name] = Probe(handles[name], ray.get(ref))
        except ray.exceptions.RayActorError:  # dead: its node or its process is gone
            continue
        except ray.exceptions.RayError:  # alive but not answering now (e.g. its node is unreachable)
            out[name] = Probe(handles[name], None)
    return out


def create(ray: ModuleType, loaded: LoadedFleet, config: SessionConfig, launch: Launch) -> Any:
    """A detached named actor for the agent, needing one unit of the fleet's resource, with the
    run in its constructor so it starts when the cluster places it, whether or not we still wait."""
    placement = loaded.fleet.spec.placement
    remote_class = ray.remote(SessionActor)
    try:
        return remote_class.options(
            name=config.agent, namespace=namespace(loaded), lifetime="detached", num_cpus=0,
            resources={placement.resource: 1}, scheduling_strategy="SPREAD", max_restarts=0, max_task_retries=0,
            max_concurrency=8).remote(config, launch)
    except ValueError as exc:  # the name is taken: an actor fleet did not observe (it is seen next pass)
        raise FleetError(f"cannot create the session actor {namespace(loaded)}/{config.agent}: {exc}") from None


def call(ray: ModuleType, method: Any, *args: Any, timeout: float = CALL_TIMEOUT) -> Any:
    """Call an actor method and wait; a dead actor or a timeout is a FleetError (the action fails)."""
    try:
        return ray.get(method.remote(*args), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise FleetError(f"the session actor did not answer within {timeout:g}s") from None
    except ray.exceptions.RayActorError as exc:
        raise FleetError(f"the session actor is gone: {str(exc).splitlines()[0]}") from None
    except ray.exceptions.RayError as exc:
        raise FleetError(f"the session actor failed: {str(exc).splitlines()[0]}") from None


def kill(ray: ModuleType, handle: Any, *, name: str, ns: str, wait: float = 10.0) -> None:
    """Kill the actor and wait until its name is free: the same pass may start the agent's next actor."""
    try:
        ray.kill(handle, no_restart=True)
    except ValueError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=ns)
        except ValueError:
            return
        time.sleep(0.05)


def free_slots(ray: ModuleType, resource: str) -> tuple[float, float]:
    """(available, total) units of the fleet's resource in the cluster."""
    return ray.available_resources().get(resource, 0.0), ray.cluster_resources().get(resource, 0.0)


def _started_here() -> str | None:
    """The address `ray start` (or a local test cluster) recorded on this machine, as `auto` finds it."""
    try:
        return Path(tempfile.gettempdir(), "ray", "ray_current_cluster").read_text().split()[0]
    except (OSError, IndexError):
        return None


def _reachable(address: str, timeout: float = 3.0) -> bool:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
