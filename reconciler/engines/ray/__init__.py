"""The ray engine (docs/scale-out.md): each session a detached named Ray actor, in a clone of
spec.remote on its node.

- engine.py    RayEngine, the `Engine` protocol (engines/base.py): plan adjustments, the
               steps the shared executor calls (carried out by actors and on the remote),
               release of ended clones, status and logs
- observe.py   actors, their status and the remote's branches -> the planner's Observed
- remote.py    the driver's git against spec.remote (fetch cache, leased pushes, fencing by attempt refs)
- cluster.py   connecting to Ray, finding and creating the fleet's actors (the only `import ray`
               of the driver, besides the actors' own classes below)
- lease.py     one controller per fleet: the lease, the records and log copies on the cluster
- locks.py     `fleet lock` across the nodes (a semaphore actor per lock)
- compat.py    what fleet assumes of Ray beyond its public API, for the tested Ray versions
- actor.py     runs on the nodes: the clone, the session, pushes, gates, release
- host.py      the session's process on a node; dies with its actor
"""
