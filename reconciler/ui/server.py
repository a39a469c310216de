"""Bind and serve the dashboard: 127.0.0.1 by default, any other address only with a token.

The socket is bound here, before uvicorn starts, so the printed URL has the real port
(`--port 0` picks a free one) and a bad address is an error at once.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import FleetError
from . import auth
from .app import Settings, create_app
from .source import ViewSource


@dataclass
class Dashboard:
    url: str  # with ?token= when reads need it
    token: str
    sock: socket.socket
    server: object  # uvicorn.Server
    source: ViewSource

    def serve(self) -> None:
        """Run until SIGINT/SIGTERM (in the main thread) or `shutdown()`."""
        self.server.run(sockets=[self.sock])  # type: ignore[attr-defined]
        self.source.stop()

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve, name="fleet-ui", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]


def open_dashboard(file: str, *, host: str = "127.0.0.1", port: int = 8787, token: str | None = None,
                   explicit_token: bool = False, actions: bool = False, interval: float = 5.0,
                   grace: float = 10.0) -> Dashboard:
    import uvicorn

    loopback = auth.is_loopback(host)
    if not loopback and not explicit_token:
        raise FleetError(f"--host {host} would serve the dashboard beyond this machine without an access token",
                         hint="also pass --token TOKEN (or FLEET_UI_TOKEN), e.g. --token \"$(openssl rand -hex 16)\"; "
                              "or keep the default 127.0.0.1 and use an SSH tunnel")
    token = token or auth.new_token()
    source = ViewSource(file, interval=interval)
    settings = Settings(file=file, token=token, actions=actions, open_reads=loopback, grace=grace)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/" + ("" if loopback else f"?token={token}")
    config = uvicorn.Config(create_app(source, settings), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, lifespan="off")
    source.start()
    return Dashboard(url=url, token=token, sock=sock, server=uvicorn.Server(config), source=source)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FleetError(f"cannot resolve --host {host}: {exc}", hint="give an IP address such as 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise FleetError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="choose another --port (0 picks a free one)") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def announce(dashboard: Dashboard, *, actions: bool, say: Callable[[str], None]) -> None:
    say(f"fleet ui: {dashboard.url}")
    if actions:
        say(f"actions enabled; they need the token: {dashboard.token}")
        say(f"  open {dashboard.url.split('?')[0]}?token={dashboard.token} to act from the page")
    else:
        say("read-only (start with --actions to stop, restart or resume agents)")
