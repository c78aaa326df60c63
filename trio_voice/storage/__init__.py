"""Conversation storage: conversations, messages (role, text, interrupted) and per-turn latency records.

- ``interface``: :class:`ConversationStore`, the methods the server uses, and :class:`StoredMessage`.
- ``location``: :func:`open_store`, which opens the backend a location names.
- ``sqlite``: :class:`SQLiteStore`, one file, the embedded default.
"""

from trio_voice.storage.interface import ROLES as ROLES
from trio_voice.storage.interface import SCHEMA_VERSION as SCHEMA_VERSION
from trio_voice.storage.interface import ConversationStore as ConversationStore
from trio_voice.storage.interface import StoredMessage as StoredMessage
from trio_voice.storage.location import open_store as open_store
from trio_voice.storage.sqlite import SQLiteStore as SQLiteStore
from trio_voice.storage.sqlite import open_sqlite_store as open_sqlite_store
