"""`fleet ui`: the live web dashboard (docs/dashboard.md).

Starlette + uvicorn, updates over server-sent events, plain HTML/JS/CSS from static/
(no front-end build). It shows what the control loop observed (control/observed_status.py),
or observes itself when no loop runs, and acts only through control/operator_actions.py.

- source.py   the current view of the fleet and its history, kept fresh in a thread
- groups.py   Needs attention / Working / Pending / Done
- detail.py   one agent: conditions, timeline, log tail, commits ahead and diffstat
- auth.py     the access token and which requests need it
- app.py      the routes (pages, JSON, SSE, actions)
- server.py   binding (127.0.0.1 unless told otherwise) and running uvicorn
"""
