"""A Ray cluster of several nodes on this machine, bound to 127.0.0.1 only.

For trying the ray engine without machines to spare, and for the tests:

    python -m reconciler.engines.ray.localcluster --workers 2 --slots 2 --port 6379

prints the address to put in spec.placement.address and runs until Ctrl-C or SIGTERM,
then stops every process it started. The head node offers no session slots (it is the
control plane); each worker node offers `--slots` units of the fleet's resource.

`ray start` cannot do this: it replaces 127.0.0.1 by the machine's outward address for
some of its servers, so a second node on the same machine would expose the cluster.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .compat import keep_loopback

# before Ray is imported: keep 127.0.0.1 as given (compat.py), report no usage
keep_loopback()
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

LOOPBACK = "127.0.0.1"
# a lost node is noticed in about a second instead of Ray's default of about half a minute
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


def start(*, workers: int = 2, slots: int = 2, resource: str = "fleet_slots", cpus: int = 1, port: int = 0,
          fast_failure_detection: bool = True) -> Any:
    """A started `ray.cluster_utils.Cluster`: a head without slots (its GCS on `port`, 0 = any free
    one) and `workers` worker nodes."""
    from ray.cluster_utils import Cluster

    head: dict[str, Any] = {"node_ip_address": LOOPBACK, "include_dashboard": False, "dashboard_host": LOOPBACK,
                            "num_cpus": 0, "resources": {resource: 0}, "gcs_server_port": port}
    if fast_failure_detection:
        head["_system_config"] = FAST_FAILURE_DETECTION
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(workers):
        add_worker(cluster, slots=slots, resource=resource, cpus=cpus)
    return cluster


def add_worker(cluster: Any, *, slots: int = 2, resource: str = "fleet_slots", cpus: int = 1) -> Any:
    return cluster.add_node(node_ip_address=LOOPBACK, num_cpus=cpus, resources={resource: slots})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.engines.ray.localcluster",
                                     description="Run a multi-node Ray cluster on 127.0.0.1 until Ctrl-C.")
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--slots", type=int, default=2, help="units of the resource per worker node (default 2)")
    parser.add_argument("--resource", default="fleet_slots", help="spec.placement.resource (default fleet_slots)")
    parser.add_argument("--port", type=int, default=6379, help="port of the head's GCS (default 6379; 0 = any)")
    parser.add_argument("--address-file", help="also write the address to this file")
    args = parser.parse_args(argv)
    cluster = start(workers=args.workers, slots=args.slots, resource=args.resource, port=args.port)
    if args.address_file:
        with open(args.address_file, "w") as f:
            f.write(cluster.address + "\n")
    print(f"Ray cluster on {LOOPBACK}: head (no {args.resource}) + {args.workers} worker node(s) with "
          f"{args.slots} {args.resource} each.\n  spec.placement.address: {cluster.address}\n"
          "Ctrl-C or SIGTERM stops it (and every session actor on it).", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    cluster.shutdown()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
