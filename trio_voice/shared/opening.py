"""Choosing the shared state at start-up: in this process by default, Redis with ``--redis-url``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..config import Config
from ..storage import ConversationStore
from .interface import SharedState
from .local import InProcessState


@asynccontextmanager
async def open_shared_state(config: Config, store: ConversationStore) -> AsyncIterator[SharedState]:
    """The shared state ``config`` asks for, over ``store`` (which keeps the offline messages).

    Raises:
        StorageError: ``redis_url`` is set and Redis cannot be reached.
    """
    if config.redis_url is None:
        yield InProcessState(store, max_queued=config.offline_max_queued, instance_id=config.instance_id)
        return
    from .redis_state import open_redis_state  # redis-py is imported only when Redis is used

    async with open_redis_state(
        config.redis_url,
        store,
        prefix=config.redis_prefix,
        instance_id=config.instance_id,
        max_queued=config.offline_max_queued,
    ) as state:
        yield state
