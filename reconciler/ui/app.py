"""The dashboard's routes: two pages, their JSON, their event streams, and the actions.

    GET  /                         the fleet page          GET /api/fleet           its data
    GET  /agents/NAME              one agent's page        GET /api/agents/NAME     its data
    GET  /api/events               SSE: `fleet` on every new observation
    GET  /api/agents/NAME/events   SSE: `agent` on every new observation, `log` as the log grows
    POST /api/agents/NAME/ACTION   stop | restart | resume ({"message": ...}) | approve ({"by"?}) |
                                   reject ({"message", "by"?}); --actions and the token

Reads never change anything. An action without the token, or on a read-only dashboard,
is refused with 403 before anything is looked at.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..control.observed_status import aged_rows
from ..control.operator_actions import ACTIONS, Done, operate
from ..errors import FleetError
from . import auth, detail
from .groups import GROUPS, group_of
from .source import ViewSource

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "fleet_ui_token"
TICK = 0.25  # seconds between checks an event stream makes
ROW_FIELDS = ("agent", "declared", "phase", "sync", "tier", "model", "branch", "dirty", "ahead", "pid",
              "age_seconds", "idle_seconds", "cost_usd", "reason", "node", "attempts")


@dataclass
class Settings:
    file: str
    token: str
    actions: bool = False
    open_reads: bool = True  # 127.0.0.1: reads need no token
    grace: float = 10.0


def fleet_payload(source: ViewSource, settings: Settings) -> dict[str, Any]:
    view = source.view or {}
    rows = aged_rows(view) if view else []
    groups: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    for row in rows:
        group = group_of(row)
        groups[group].append({**{k: row.get(k) for k in ROW_FIELDS}, "group": group})
    by_tier = view.get("spendTodayByTier") or {}
    budgets = view.get("budgetUsdPerDayByTier") or {}
    plan = view.get("plan") or {}
    return {
        "fleet": source.fleet, "source": source.source, "error": source.error,
        "observedAt": view.get("observedAt"), "ageSeconds": source.age_seconds(),
        "loop": source.loop(), "actions": settings.actions,
        "spend": {"today": view.get("spendTodayUsd", 0.0), "budget": view.get("budgetUsdPerDay"),
                  "tiers": {t: {"spent": by_tier.get(t, 0.0), "budget": budgets.get(t)}
                            for t in sorted(set(by_tier) | set(budgets))}},
        "caps": view.get("caps") or {},
        "plan": {"summary": plan.get("summary") or {}, "notes": plan.get("notes") or [],
                 "actions": [{k: a.get(k) for k in ("kind", "agent", "reason")} for a in plan.get("actions") or []]},
        "groups": groups,
        "history": source.history(),
    }


def agent_payload(source: ViewSource, settings: Settings, name: str, *, with_log: bool = True) -> dict[str, Any] | None:
    rows = {r["agent"]: r for r in (aged_rows(source.view) if source.view else [])}
    row = rows.get(name)
    if row is None:
        return None
    from ..store.records import StateStore

    store = StateStore(source.store.home, source.fleet)
    rec = store.load(name)
    text, offset = detail.log_tail(store, name)
    out = {"fleet": source.fleet, "agent": name, "row": row, "group": group_of(row), "actions": settings.actions,
           "observedAt": (source.view or {}).get("observedAt"), "source": source.source,
           "timeline": detail.timeline(rec, text), "commits": detail.commits(row.get("worktree"), source.base),
           "review": review_payload(settings.file, name)}
    if with_log:
        out["log"] = {"text": detail.rendered(text), "offset": offset}
    return out


REVIEW_ACTIONS = ("approve", "reject")


def review(file: str, name: str, what: str, *, message: str, by: str) -> Done:
    """Approve or reject from the dashboard (control/review_actions.py, as `fleet approve/reject`):
    the reviewer is the name typed on the page, else the user running `fleet ui`, marked as
    coming from the dashboard."""
    from ..control import review_actions
    from ..spec.loader import load_fleet

    who = by or f"{review_actions.reviewer(None)} (dashboard)"
    loaded = load_fleet(file)
    if what == "approve":
        done = review_actions.approve(loaded, name, by=who, command="fleet ui (approve)")
        return Done(True, f"approved {name} at {done.sha[:12]} by {done.by}; the next pass queues it")
    done = review_actions.reject(loaded, name, message, by=who, command="fleet ui (reject)")
    failed = [o for o in done.outcomes if not o.ok]
    said = "; ".join(f"{o.action.kind}: {o.message}" + (f" (hint: {o.hint})" if o.hint and not o.ok else "")
                     for o in done.outcomes)
    return Done(not failed, f"rejected {name} at {done.sha[:12]} by {done.by}" + (f"; {said}" if said else ""))


def review_payload(file: str, name: str) -> dict[str, Any] | None:
    """The agent's review packet (observe/review.py), for fleets with spec.delivery; else None."""
    from ..observe.gitrepo import GitRepo
    from ..observe.review import review_packet
    from ..observe.snapshot import state_store
    from ..spec.loader import load_fleet

    try:
        loaded = load_fleet(file)
    except FleetError:
        return None
    delivery = loaded.fleet.spec.delivery
    if delivery is None:
        return None
    from ..engines import engine_for

    repo = GitRepo(loaded.repo)
    agent = loaded.agent(name)
    ref = engine_for(loaded, connect=False).branch_ref(agent) if agent is not None else None
    packet = review_packet(loaded, repo, state_store(repo, loaded.name), name, ref=ref)
    if packet is None:
        return None
    return {**packet.to_json(), "approval": delivery.approval, "into": delivery.into}


def create_app(source: ViewSource, settings: Settings) -> Starlette:
    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            response = FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})
            given = request.query_params.get("token")
            if auth.matches(given, settings.token):  # so the page's scripts and styles load too
                response.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
            return response
        return serve

    async def api_fleet(request: Request) -> Response:
        return JSONResponse(fleet_payload(source, settings))

    async def api_agent(request: Request) -> Response:
        name = request.path_params["name"]
        data = await run_in_threadpool(agent_payload, source, settings, name)
        if data is None:
            return JSONResponse({"error": f"no agent {name!r} in fleet {source.fleet}"}, status_code=404)
        return JSONResponse(data)

    async def fleet_events(request: Request) -> Response:
        async def stream() -> AsyncIterator[dict[str, str]]:
            seen = -1
            while not await request.is_disconnected():
                if source.version != seen:
                    seen = source.version
                    yield {"event": "fleet", "data": json.dumps(fleet_payload(source, settings))}
                await asyncio.sleep(TICK)
        return EventSourceResponse(stream(), ping=15)

    async def agent_events(request: Request) -> Response:
        name = request.path_params["name"]
        from ..store.records import StateStore

        store = StateStore(source.store.home, source.fleet)
        offset = int(request.query_params.get("offset") or 0)

        async def stream() -> AsyncIterator[dict[str, str]]:
            nonlocal offset
            seen = source.version
            while not await request.is_disconnected():
                text, after = detail.log_tail(store, name, offset)
                if after != offset:
                    offset = after
                    yield {"event": "log", "data": json.dumps({"text": detail.rendered(text), "offset": offset})}
                if source.version != seen:
                    seen = source.version
                    data = await run_in_threadpool(agent_payload, source, settings, name, with_log=False)
                    if data is not None:
                        yield {"event": "agent", "data": json.dumps(data)}
                await asyncio.sleep(TICK)
        return EventSourceResponse(stream(), ping=15)

    async def act(request: Request) -> Response:
        name, what = request.path_params["name"], request.path_params["action"]
        if not settings.actions:
            return JSONResponse({"error": "this dashboard is read-only; start it with `fleet ui --actions`"},
                                status_code=403)
        if not auth.matches(auth.bearer(request.headers.get("authorization")), settings.token):
            return JSONResponse({"error": "actions need the access token printed when fleet ui started "
                                          "(Authorization: Bearer TOKEN)"}, status_code=403)
        if what not in (*ACTIONS, *REVIEW_ACTIONS):
            return JSONResponse({"error": f"unknown action {what!r}; one of {', '.join(ACTIONS + REVIEW_ACTIONS)}"},
                                status_code=404)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "the body must be JSON, e.g. {\"message\": \"...\"}"}, status_code=400)
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
        by = str(body.get("by") or "").strip() if isinstance(body, dict) else ""
        try:
            if what in REVIEW_ACTIONS:
                done = await run_in_threadpool(review, settings.file, name, what, message=message, by=by)
            else:
                done = await run_in_threadpool(operate, settings.file, name, what, message=message,
                                               grace=settings.grace)
        except FleetError as exc:
            return JSONResponse({"error": exc.render()}, status_code=409)
        source.poke()
        return JSONResponse({"ok": done.ok, "message": done.message}, status_code=200 if done.ok else 500)

    routes = [
        Route("/", page("fleet.html")),
        Route("/agents/{name}", page("agent.html")),
        Route("/api/fleet", api_fleet),
        Route("/api/events", fleet_events),
        Route("/api/agents/{name}", api_agent),
        Route("/api/agents/{name}/events", agent_events),
        Route("/api/agents/{name}/{action}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = []
    if settings.open_reads:
        # bound to loopback: refuse other Host names, so a web page cannot reach us by DNS rebinding
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"]))
    else:
        middleware.append(Middleware(BaseHTTPMiddleware, dispatch=_token_everywhere(settings)))
    return Starlette(routes=routes, middleware=middleware)


def _token_everywhere(settings: Settings) -> Callable[..., Awaitable[Response]]:
    """Not on loopback: every request shows the token (header, ?token= or the page's cookie)."""

    async def dispatch(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        given = (auth.bearer(request.headers.get("authorization")) or request.query_params.get("token")
                 or request.cookies.get(COOKIE))
        if not auth.matches(given, settings.token):
            return JSONResponse({"error": "this dashboard needs its access token: open the URL fleet ui printed "
                                          "(…/?token=TOKEN)"}, status_code=403)
        return await call_next(request)

    return dispatch
