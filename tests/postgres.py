"""A fresh PostgreSQL schema per test, on the server the machine provides: never skipped.

The tests use the server at ``TRIO_VOICE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
trust auth). Each test gets its own schema, created before and dropped (with everything in it) after, and
a URL whose ``search_path`` points at it, so tests are isolated from each other and from earlier runs,
and the store under test migrates its own empty schema like a first start-up.

When the server is not reachable the test fails with the reason: a PostgreSQL backend that nothing
tests is worse than a red run on a machine without one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

TEST_PG_URL = os.environ.get("TRIO_VOICE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def with_params(url: str, **params: str) -> str:
    """``url`` with these libpq parameters added to its query string (``options`` values are appended)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in params.items():
        query[key] = f"{query[key]} {value}" if key == "options" and key in query else value
    return urlunsplit(parts._replace(query=urlencode(query)))


def schema_url(url: str, schema: str) -> str:
    """``url`` with ``search_path`` set to ``schema`` for every connection made with it."""
    return with_params(url, options=f"-csearch_path={schema}")


def server_address(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"


def admin_connection() -> psycopg.Connection:
    """An autocommit connection to the test database; fails the test (never skips) if there is none."""
    try:
        return psycopg.connect(TEST_PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
    # Outside the except block, so the report is this one line rather than a chained traceback.
    pytest.fail(
        f"PostgreSQL at {server_address(TEST_PG_URL)} is not reachable: {reason}; set TRIO_VOICE_TEST_PG_URL",
        pytrace=False,
    )


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """Create a uniquely named schema, yield a URL that uses it, then drop it with everything in it."""
    schema = f"tv_test_{uuid.uuid4().hex[:16]}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield schema_url(TEST_PG_URL, schema)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
