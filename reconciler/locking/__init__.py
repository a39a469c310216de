"""Mutual exclusion (docs/locks.md, docs/sessions.md).

- fleet_lock.py  one reconcile pass per fleet at a time (apply, delete, the loop)
- slots.py       `fleet lock NAME -- CMD`: build locks with N slots shared by sessions
"""
