"""One controller per fleet on a Ray cluster, and the fleet's records where every controller sees them.

The local fleet lock (locking/fleet_lock.py) is a file in one checkout: two checkouts (CI
and a laptop) driving one cluster would each hold their own and release each other's
actors. So `apply`, `delete` and the loop also hold a **lease on the cluster**: a
detached named actor `fleet::controller` in the fleet's namespace (public Ray API only),
which grants it to one holder at a time for `TTL` seconds; the holder renews it from a
thread every `TTL / 6`. A holder that dies (or loses the cluster) stops renewing and the
lease expires; a second controller meanwhile waits (or, with `--lock-timeout`, fails
naming the holder: command, pid, host, since).

The same actor keeps the **records**: every state record the holder saves goes to it as
well (`MirroredStore`), with the run each agent's actor was started for. A controller
whose checkout is new (deleted and re-cloned, or another machine) takes the cluster's
records on acquiring the lease, so its first pass adopts every running session with its
history (attempts, cost, conditions). Only the holder of the lease may write them: a
controller whose lease lapsed cannot overwrite what the next one wrote.

It also keeps a copy of each session's log, shipped by the session's actor while it runs
and when its run ends (actor.py), so the output of a session whose node is lost before a
pass copied it is still copied to the fleet machine (observe.sync_logs).

The actor lives on the head node where the cluster has one (`node:__internal_head__`),
so losing a worker node loses no lease and no record.
"""
from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import FleetError
from ...store.records import SessionRecord, StateStore, now_iso, write_json_atomic
from . import compat

NAME = "fleet::controller"  # agent names cannot hold "::" (spec/names.py): never taken for a session
TTL = 30.0  # seconds a lease lasts without renewal (a dead controller's is free after this)
POLL = 1.0  # seconds between tries while waiting for another controller's lease
LOG_KEPT = 8 << 20  # bytes of each agent's session log kept on the cluster (see ControlActor.put_log)
_HEAD = compat.HEAD_RESOURCE  # the resource Ray gives the head node


class ControlActor:
    """The lease and the records, on the cluster. Plain Python: ray.remote wraps it below."""

    def __init__(self) -> None:
        self.holder: dict[str, Any] | None = None
        self.expires = 0.0  # time.monotonic() of this actor's process: no clock of another machine counts
        self.records: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, str] = {}  # agent -> run_id its actor was started for
        self.seeded = False  # a controller has written records here (an empty table is then the truth)
        # agent -> its session log as its actor shipped it: {"instance", "start" (offset of data[0]), "data"}
        self.logs: dict[str, dict[str, Any]] = {}

    def acquire(self, info: dict[str, Any], ttl: float) -> dict[str, Any]:
        now = time.monotonic()
        if self.holder is not None and self.expires > now and self.holder["id"] != info["id"]:
            return {"ok": False, "holder": self.holder, "expires_in": self.expires - now}
        if self.holder is None or self.holder["id"] != info["id"]:
            self.holder = dict(info)
        self.expires = now + ttl
        return {"ok": True, "holder": self.holder, "seeded": self.seeded}

    def renew(self, lease_id: str, ttl: float) -> bool:
        if self.holder is None or self.holder["id"] != lease_id or self.expires <= time.monotonic():
            return False
        self.expires = time.monotonic() + ttl
        return True

    def release(self, lease_id: str) -> None:
        if self.holder is not None and self.holder["id"] == lease_id:
            self.holder, self.expires = None, 0.0

    def put_log(self, agent: str, instance: str, offset: int, data: bytes) -> int:
        """Bytes of an actor's session log from `offset`; returns how far this copy now reaches."""
        kept = self.logs.get(agent)
        if kept is None or kept["instance"] != instance:
            kept = self.logs[agent] = {"instance": instance, "start": offset, "data": bytearray()}
        end = kept["start"] + len(kept["data"])
        if offset <= end < offset + len(data):
            kept["data"] += data[end - offset:]
        over = len(kept["data"]) - LOG_KEPT
        if over > 0:  # the newest LOG_KEPT bytes: the driver copies long before a log grows this far
            del kept["data"][:over]
            kept["start"] += over
        return int(kept["start"] + len(kept["data"]))

    def get_log(self, agent: str) -> dict[str, Any] | None:
        """The copy of the log of `agent`'s last actor: {"instance", "start", "data"}."""
        kept = self.logs.get(agent)
        return None if kept is None else {**kept, "data": bytes(kept["data"])}

    def node(self) -> str:
        """The id of the node this actor runs on (the head's, see `control_actor`)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def who(self) -> dict[str, Any] | None:
        return self.holder if self.holder is not None and self.expires > time.monotonic() else None

    def snapshot(self) -> dict[str, Any]:
        return {"records": dict(self.records), "runs": dict(self.runs), "seeded": self.seeded}

    def write(self, lease_id: str, records: dict[str, dict[str, Any] | None], runs: dict[str, str | None],
              all_runs: bool = False) -> bool:
        """Save (a dict) or remove (None) records and runs (`all_runs`: `runs` is the whole table);
        refused unless `lease_id` holds the lease."""
        if self.holder is None or self.holder["id"] != lease_id or self.expires <= time.monotonic():
            return False
        if all_runs:
            self.runs = {}
        for name, data in records.items():
            if data is None:
                self.records.pop(name, None)
            else:
                self.records[name] = data
        for name, run in runs.items():
            if run is None:
                self.runs.pop(name, None)
            else:
                self.runs[name] = run
        self.seeded = True
        return True


def control_actor(ray: ModuleType, ns: str) -> Any:
    """The fleet's control actor, created on first use (on the head node when there is one)."""
    resources = {_HEAD: 0.001} if ray.cluster_resources().get(_HEAD) else {}
    return ray.remote(ControlActor).options(
        name=NAME, namespace=ns, lifetime="detached", get_if_exists=True, num_cpus=0, resources=resources,
        max_restarts=-1, max_concurrency=1).remote()


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another controller"
    return (f"{holder.get('command')} (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}, "
            f"checkout {holder.get('checkout')})")


class ControllerLease:
    """This process's lease on one fleet's cluster namespace."""

    def __init__(self, ray: ModuleType, ns: str, *, command: str, checkout: Path) -> None:
        self.ray, self.ns = ray, ns
        self.info = {"id": uuid.uuid4().hex[:12], "pid": os.getpid(), "host": socket.gethostname(),
                     "since": now_iso(), "command": command, "checkout": str(checkout), "argv": sys.argv[1:]}
        self.handle = control_actor(ray, ns)
        self.held = False
        self.seeded = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return str(self.info["id"])

    def _call(self, method: Any, *args: Any, timeout: float = 120.0) -> Any:  # a first call starts its worker
        try:
            return self.ray.get(method.remote(*args), timeout=timeout)
        except self.ray.exceptions.RayError as exc:
            raise FleetError(f"cannot reach the fleet's controller lease on the Ray cluster: "
                             f"{str(exc).splitlines()[0]}") from None

    def acquire(self, *, timeout: float | None, on_wait: Callable[[str], None] | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while True:
            try:
                got = self.ray.get(self.handle.acquire.remote(self.info, TTL), timeout=120)
            except self.ray.exceptions.RayActorError:  # retired (a whole-fleet delete) while this one waited
                self.handle = control_actor(self.ray, self.ns)
                continue
            except self.ray.exceptions.RayError as exc:
                raise FleetError(f"cannot reach the fleet's controller lease on the Ray cluster: "
                                 f"{str(exc).splitlines()[0]}") from None
            if got["ok"]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise FleetError(f"another controller holds fleet namespace {self.ns} on the Ray cluster: "
                                 f"{describe(got['holder'])}",
                                 hint="one controller per fleet: wait for it, stop it, or raise --lock-timeout "
                                      f"(a controller that died loses its lease within {TTL:g}s)")
            if on_wait and not told:
                on_wait(f"waiting for the controller lease on the Ray cluster held by {describe(got['holder'])}")
                told = True
            time.sleep(POLL)
        self.held, self.seeded = True, bool(got.get("seeded"))
        self._stop.clear()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._renew, name="fleet-lease", daemon=True)
            self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(TTL / 6):
            try:
                ok = self.ray.get(self.handle.renew.remote(self.id, TTL), timeout=TTL / 3)
            except Exception:  # noqa: BLE001 - the cluster is unreachable: the lease lapses, writes are refused
                continue
            if not ok:
                self.held = False
                return

    def release(self) -> None:
        self._stop.set()
        if self.held:
            self.held = False
            try:
                self.ray.get(self.handle.release.remote(self.id), timeout=10)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass

    def write(self, records: dict[str, dict[str, Any] | None], runs: dict[str, str | None] | None = None,
              *, all_runs: bool = False) -> None:
        if not self._call(self.handle.write, self.id, records, runs or {}, all_runs):
            self.held = False
            raise FleetError(f"lost the controller lease of fleet namespace {self.ns} on the Ray cluster "
                             f"(now held by {describe(self._call(self.handle.who))}); nothing more is written",
                             hint="another controller took over after this one stopped renewing its lease")
        self.seeded = True

    def adopt_into(self, store: StateStore, ledger_path: Path) -> None:
        """Make this checkout's records the cluster's (the last holder's), or seed the cluster with
        them when it has none yet (a cluster new to this fleet, or an older fleet's records)."""
        snap = self._call(self.handle.snapshot)
        local = store.all()
        if not snap["seeded"]:
            self.write({name: rec.to_json() for name, rec in local.items()}, _runs(_read(ledger_path)),
                       all_runs=True)
            return
        for name, data in snap["records"].items():
            rec = SessionRecord.from_json(data)
            if name not in local or local[name].to_json() != data:
                StateStore.save(store, rec)
        for name in set(local) - set(snap["records"]):
            StateStore.remove(store, name)
        ledger = _read(ledger_path)
        changed = False
        for name, run in snap["runs"].items():
            known = ledger.setdefault(name, {})
            if known.get("run_id") != run:
                # the run another controller started: its log copy here (if any) is not of it
                known.update(run_id=run, instance=None, log_offset=0)
                changed = True
        if changed:
            write_json_atomic(ledger_path, ledger)


class MirroredStore(StateStore):
    """The state store of a ray fleet: what the lease holder saves goes to the cluster too."""

    def __init__(self, base: StateStore) -> None:
        self.__dict__.update(base.__dict__)
        self.lease: ControllerLease | None = None  # set while this process holds the lease
        self._runs_sent: dict[str, str | None] | None = None

    def save(self, record: SessionRecord) -> None:
        super().save(record)
        if self.lease is not None and self.lease.held:
            self.lease.write({record.agent: record.to_json()})

    def remove(self, agent: str) -> None:
        super().remove(agent)
        if self.lease is not None and self.lease.held:
            self.lease.write({agent: None}, {agent: None})

    def save_runs(self, ledger: dict[str, Any]) -> None:
        """The run each agent's actor was started for (from the driver's ledger), for the next controller."""
        if self.lease is not None and self.lease.held:
            runs = _runs(ledger)
            if runs != self._runs_sent:
                self.lease.write({}, runs, all_runs=True)
                self._runs_sent = runs


def retire(ray: ModuleType, ns: str, lease: ControllerLease) -> list[str]:
    """The fleet has nothing left on the cluster (the caller checked, holding `lease`): remove fleet's
    own actors from its namespace, the locks no session holds and, last, the control actor with its
    lease and records. What was removed, by name."""
    from .locks import PREFIX

    removed = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry.get("namespace") != ns or not name.startswith(PREFIX):
            continue
        try:
            handle = ray.get_actor(name, namespace=ns)
            if ray.get(handle.holders.remote(), timeout=30):
                continue  # held (by a process fleet does not know of): it stays
            ray.kill(handle, no_restart=True)
            removed.append(name)
        except (ValueError, ray.exceptions.RayError):
            continue
    lease.held = False  # nothing to release: the lease goes with its actor
    lease._stop.set()
    ray.kill(lease.handle, no_restart=True)
    removed.append(NAME)
    return removed


_HELD: dict[tuple[str, str], ControllerLease] = {}  # kept by a control loop between its passes


@contextmanager
def holding(ray: ModuleType, ns: str, store: MirroredStore, ledger_path: Path, *, command: str, checkout: Path,
            timeout: float | None, on_wait: Callable[[str], None] | None, keep: bool) -> Iterator[ControllerLease]:
    """Hold the fleet's lease for one pass (`keep`: for as long as this process runs, the loop)."""
    key = (ns, str(checkout))
    lease = _HELD.get(key)
    fresh = lease is None or not lease.held
    if lease is None or not lease.held:
        lease = ControllerLease(ray, ns, command=command, checkout=checkout)
        lease.acquire(timeout=timeout, on_wait=on_wait)
    if fresh:
        lease.adopt_into(store, ledger_path)
    store.lease = lease
    if keep:
        _HELD[key] = lease
    try:
        yield lease
    finally:
        store.lease = None
        if not keep:
            lease.release()


def _read(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _runs(ledger: dict[str, Any]) -> dict[str, str | None]:
    return {name: known.get("run_id") for name, known in ledger.items()
            if isinstance(known, dict) and known.get("run_id")}


@atexit.register
def _release_kept() -> None:
    for lease in list(_HELD.values()):
        lease.release()
