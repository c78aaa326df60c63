"""Who may connect: bearer tokens and allowed WebSocket origins (pure checks, shared by both listeners)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs

from .config import Config


def _header(headers: Iterable[tuple[bytes | str, bytes | str]], name: str) -> str | None:
    for key, value in headers:
        key_s = key.decode("latin-1") if isinstance(key, bytes) else key
        if key_s.lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def presented_token(headers: Iterable[tuple[bytes | str, bytes | str]], query: str) -> str | None:
    """The token a client presented: ``Authorization: Bearer T``, or ``?token=T`` for browsers."""
    auth = _header(headers, "authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    values = parse_qs(query).get("token")
    return values[0] if values else None


def is_authorized(config: Config, headers: Iterable[tuple[bytes | str, bytes | str]], query: str) -> bool:
    """True when no tokens are configured, or the client presented one of them (compared in constant time)."""
    if not config.tokens:
        return True
    token = presented_token(list(headers), query)
    return token is not None and any(hmac.compare_digest(token, t) for t in config.tokens)


def origin_allowed(config: Config, headers: Iterable[tuple[bytes | str, bytes | str]]) -> bool:
    """True when no origins are configured, the client sent none (not a browser), or it is listed."""
    if not config.allowed_origins:
        return True
    origin = _header(headers, "origin")
    return origin is None or origin in config.allowed_origins
