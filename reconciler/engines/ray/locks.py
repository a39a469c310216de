"""`fleet lock NAME -- CMD` across the nodes of a Ray cluster: one slot table for the fleet.

A local fleet's locks are files (locking/slots.py); nodes share no disk, so a session on a
ray node takes its slot from a detached named actor `fleet::lock::NAME` in the fleet's
namespace instead: a counting semaphore with the slot count declared in fleet.yaml
(`spec.locks`, handed to every session in FLEET_LOCK_SLOTS). A holder keeps its slot by
renewing it every `TTL / 5` seconds from a thread; when it dies (or its node does), the
renewals stop and the slot is free after `TTL` seconds; a holder that ends releases it at
once. The session actor (actor.py) sets the variables that make `fleet lock` use it:

    FLEET_LOCK_RAY      the fleet's namespace
    FLEET_RAY_ADDRESS   the cluster's GCS address, as the node reaches it
    FLEET_LOCK_SLOTS    {"NAME": slots} from spec.locks

Waiting, signals and the exit code are those of a local `fleet lock` (locking/slots.py).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ...errors import FleetError
from ...locking.slots import POLL_SECONDS, Say, SignalGate, check_lock_name, run_child
from ...store.records import now_iso

ENV_NAMESPACE = "FLEET_LOCK_RAY"
ENV_ADDRESS = "FLEET_RAY_ADDRESS"
ENV_SLOTS = "FLEET_LOCK_SLOTS"
TTL = 10.0  # seconds a dead holder's slot stays taken (no renewal)
PREFIX = "fleet::lock::"  # agent names cannot hold "::": never a session actor


class SlotsActor:
    """One lock's slots on the cluster. Plain Python: ray.remote wraps it below."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, Any]] = {}  # token -> holder info
        self.expires: dict[str, float] = {}  # token -> time.monotonic() of this process

    def _purge(self) -> None:
        now = time.monotonic()
        for token in [t for t, exp in self.expires.items() if exp <= now]:
            self.held.pop(token, None)
            self.expires.pop(token, None)

    def acquire(self, token: str, info: dict[str, Any], slots: int, ttl: float) -> dict[str, Any]:
        self._purge()
        if token not in self.held and len(self.held) >= slots:
            return {"ok": False, "holders": list(self.held.values())}
        self.held[token] = info
        self.expires[token] = time.monotonic() + ttl
        return {"ok": True, "holders": list(self.held.values())}

    def renew(self, token: str, ttl: float) -> bool:
        self._purge()
        if token not in self.held:
            return False
        self.expires[token] = time.monotonic() + ttl
        return True

    def release(self, token: str) -> None:
        self.held.pop(token, None)
        self.expires.pop(token, None)

    def holders(self) -> list[dict[str, Any]]:
        self._purge()
        return list(self.held.values())


def declared(environ: dict[str, str] | None = None) -> dict[str, int]:
    """The slot table the session was given (FLEET_LOCK_SLOTS)."""
    raw = (os.environ if environ is None else environ).get(ENV_SLOTS, "")
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int) and v >= 1} if isinstance(data, dict) else {}


def describe(name: str, slots: int, holders: list[dict[str, Any]]) -> str:
    parts = [f"pid {h.get('pid')} on {h.get('host')} (agent {h.get('agent') or '?'}) since {h.get('since')}: "
             f"{' '.join(map(str, h.get('cmd') or []))[:60]}" for h in holders] or ["nobody"]
    return f"{name} ({slots} slot{'s' if slots != 1 else ''} across the Ray cluster, held by {'; '.join(parts)})"


def run_on_cluster(command: Sequence[str], *, name: str, slots: int, timeout: float | None, say: Say,
                   address: str, namespace: str) -> int:
    """`fleet lock` with the cluster's slot table: run `command` holding one of `name`'s `slots`."""
    check_lock_name(name)
    ray = _connect(address, namespace)
    handle = ray.remote(SlotsActor).options(
        name=PREFIX + name, namespace=namespace, lifetime="detached", get_if_exists=True, num_cpus=0,
        max_restarts=-1).remote()
    token = uuid.uuid4().hex
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso(), "cmd": list(command),
            "agent": os.environ.get("FLEET_AGENT")}
    with SignalGate() as gate:
        start, announced = time.monotonic(), False
        while True:
            got = ray.get(handle.acquire.remote(token, info, slots, TTL), timeout=60)
            if got["ok"]:
                break
            waited = time.monotonic() - start
            if not announced:
                say(f"fleet lock: waiting for {describe(name, slots, got['holders'])}")
                announced = True
            if timeout is not None and waited >= timeout:
                raise FleetError(f"timed out after {timeout:g}s waiting for lock "
                                 f"{describe(name, slots, got['holders'])}",
                                 hint="wait for the holder to finish, raise --timeout, or drop it to wait "
                                      "without limit")
            for sig in gate.wait(POLL_SECONDS * 2):
                say(f"fleet lock: signal {sig.signum} while waiting for {name}; not run")
                return 128 + sig.signum
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(TTL / 5):
                try:
                    ray.get(handle.renew.remote(token, TTL), timeout=TTL / 2)
                except Exception:  # noqa: BLE001 - the cluster is unreachable now: the next one may get through
                    continue

        threading.Thread(target=renew, name="fleet-lock-renew", daemon=True).start()
        try:
            return run_child(command, gate=gate, say=say, poll=POLL_SECONDS)
        finally:
            stop.set()
            try:
                ray.get(handle.release.remote(token), timeout=30)
            except Exception:  # noqa: BLE001 - it expires after TTL
                say(f"fleet lock: could not release {name} on the cluster; it frees itself within {TTL:g}s")


def _connect(address: str, namespace: str) -> Any:
    from .cluster import connect_to

    return connect_to(address, namespace)
