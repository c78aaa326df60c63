"""Identifiers of sessions, replies and HTTP requests: a readable prefix and 80 random bits."""

from __future__ import annotations

import uuid


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"
