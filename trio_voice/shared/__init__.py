"""State shared across connections (and, later, server instances), behind one interface.

- ``interface``: :class:`SharedState` (resume routes, presence, typing, per-user fan-out, offline queues)
  and its records.
- ``local``: :class:`InProcessState`, the embedded default: dictionaries of this process, offline
  messages in the conversation store.
- ``redis_state``: ``RedisState``, the same for several instances (``--redis-url``), over
  ``redis_client`` (redis-py in worker threads) and ``wire`` (its records as JSON).
- ``fanout`` (this process's subscribers), ``offline_store`` (offline messages in the store, for both),
  ``opening`` (:func:`open_shared_state`: the one the config asks for).
"""

from .interface import PRESENCE_STATUSES as PRESENCE_STATUSES
from .interface import MessageQueued as MessageQueued
from .interface import PresenceChanged as PresenceChanged
from .interface import QueueFull as QueueFull
from .interface import SessionPresence as SessionPresence
from .interface import SessionRoute as SessionRoute
from .interface import SharedState as SharedState
from .interface import TypingChanged as TypingChanged
from .interface import UserEvent as UserEvent
from .interface import UserPresence as UserPresence
from .local import InProcessState as InProcessState
from .opening import open_shared_state as open_shared_state
