"""The dashboard's access token and which requests need it.

Like Jupyter: a random token is printed at start (or given with --token). On 127.0.0.1
pages and data are open to this machine's users and only actions need the token; on any
other address every request needs it. A request carries it as `Authorization: Bearer T`,
or, for pages and the event stream (which cannot set headers), as `?token=T`. Actions
take it from the header only, so a link or a cross-site form can never act.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets

LOOPBACK_NAMES = frozenset({"localhost"})


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None
