"""Who may connect: bearer tokens and allowed WebSocket origins (pure checks, shared by both listeners)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs

import attrs

from .config import Config


@attrs.frozen
class Identity:
    """Who a caller is: an operator (a plain ``--token``, or anyone when no tokens are configured), or a
    user (a ``--user-token USER=TOKEN``), who may act only as that user."""

    user_id: str | None = None

    @property
    def operator(self) -> bool:
        return self.user_id is None

    def may_act_as(self, user_id: str) -> bool:
        return self.operator or self.user_id == user_id


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


def identify(
    config: Config, headers: Iterable[tuple[bytes | str, bytes | str]], query: str
) -> Identity | None:
    """Who presented these credentials, or None if they are not accepted.

    Without configured tokens everyone is an operator. Every configured token is compared (in constant
    time), so the answer's timing does not say which one matched.
    """
    if not config.tokens and not config.user_tokens:
        return Identity()
    token = presented_token(list(headers), query)
    if token is None:
        return None
    found: Identity | None = None
    for candidate in config.tokens:
        if hmac.compare_digest(token, candidate):
            found = Identity()
    for entry in config.user_tokens:
        user, _, candidate = entry.partition("=")
        if hmac.compare_digest(token, candidate):
            found = Identity(user)
    return found


def is_authorized(config: Config, headers: Iterable[tuple[bytes | str, bytes | str]], query: str) -> bool:
    """True when no tokens are configured, or the client presented one of them (compared in constant time)."""
    return identify(config, headers, query) is not None


def origin_allowed(config: Config, headers: Iterable[tuple[bytes | str, bytes | str]]) -> bool:
    """True when no origins are configured, the client sent none (not a browser), or it is listed."""
    if not config.allowed_origins:
        return True
    origin = _header(headers, "origin")
    return origin is None or origin in config.allowed_origins
