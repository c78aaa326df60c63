"""Which backend a store location names, and opening it: a ``postgresql://`` URL or a SQLite file path.

The default (a path) needs no service: the README's commands run on one SQLite file. A PostgreSQL URL is
for deployments where several instances share conversations. psycopg is imported only when a URL asks
for it, so the embedded default never loads libpq.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import StorageError
from .interface import ConversationStore
from .sqlite import open_sqlite_store

__all__ = ["POSTGRES_SCHEMES", "open_store"]

POSTGRES_SCHEMES = ("postgresql", "postgres")  # the two spellings libpq accepts


def _scheme(location: str | os.PathLike[str]) -> str | None:
    if isinstance(location, str) and "://" in location:
        return location.split("://", 1)[0].lower()
    return None


@contextlib.asynccontextmanager
async def open_store(location: str | os.PathLike[str]) -> AsyncIterator[ConversationStore]:
    """Open the conversation store at ``location``: PostgreSQL for a ``postgresql://`` (or
    ``postgres://``) URL, otherwise the SQLite file at that path (created, with its parent dirs, if needed).

    Raises ``StorageError`` if the store cannot be opened, or for a URL of another scheme. The store is
    closed when the block exits, even on cancellation.
    """
    scheme = _scheme(location)
    if scheme in POSTGRES_SCHEMES:
        from .postgres import open_postgres_store

        async with open_postgres_store(str(location)) as store:
            yield store
    elif scheme is not None:
        raise StorageError(
            f"unsupported database URL scheme {scheme!r}: use postgresql://… or a SQLite file path"
        )
    else:
        async with open_sqlite_store(Path(location)) as sqlite_store:
            yield sqlite_store
