"""The control pass and the loop (docs/architecture.md).

- converge.py     one reconcile pass: lock, observe, refresh records, plan, act
- loop.py         `fleet reconcile --watch/--once`: passes on a schedule
- status_rows.py  the per-agent status view, computed without writing anything
"""
