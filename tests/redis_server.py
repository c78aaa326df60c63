"""The Redis the machine provides, for tests: a unique key prefix per test, never skipped.

The tests use the server at ``TRIO_VOICE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Each
test gets its own key prefix, and every key under it is deleted afterwards, so tests are isolated from
each other, from earlier runs and from anything else using that Redis.

When the server is not reachable the test fails with the reason: a Redis backend that nothing tests is
worse than a red run on a machine without one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import redis

TEST_REDIS_URL = os.environ.get("TRIO_VOICE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def admin_client() -> redis.Redis:
    """A client of the test Redis that has answered PING; fails the test (never skips) if there is none."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
        return client
    except (redis.RedisError, OSError) as exc:
        reason = " ".join(str(exc).split())
    client.close()
    pytest.fail(
        f"Redis at {TEST_REDIS_URL} is not reachable: {reason}; set TRIO_VOICE_TEST_REDIS_URL", pytrace=False
    )


@contextlib.contextmanager
def fresh_prefix() -> Iterator[str]:
    """A key prefix no one else uses; every key under it is deleted afterwards."""
    prefix = f"tv-test-{uuid.uuid4().hex[:16]}:"
    client = admin_client()
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
