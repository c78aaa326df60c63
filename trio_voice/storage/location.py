"""Which backend a store location names, and opening it. So far one: a SQLite file path.

A location is a path or a URL, so that a database server can be named by URL beside the default file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import StorageError
from .interface import ConversationStore
from .sqlite import open_sqlite_store

__all__ = ["open_store"]


def _scheme(location: str | os.PathLike[str]) -> str | None:
    if isinstance(location, str) and "://" in location:
        return location.split("://", 1)[0].lower()
    return None


@contextlib.asynccontextmanager
async def open_store(location: str | os.PathLike[str]) -> AsyncIterator[ConversationStore]:
    """Open the conversation store at ``location``: the SQLite file at that path (created, with its
    parent dirs, if needed).

    Raises ``StorageError`` if the store cannot be opened, or for a URL of another scheme. The store is
    closed when the block exits, even on cancellation.
    """
    scheme = _scheme(location)
    if scheme is not None:
        raise StorageError(f"unsupported database URL scheme {scheme!r}: use a SQLite file path")
    else:
        async with open_sqlite_store(Path(location)) as sqlite_store:
            yield sqlite_store
