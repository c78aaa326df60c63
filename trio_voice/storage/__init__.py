"""Conversation storage: conversations, messages (role, text, interrupted) and per-turn latency records.

- ``interface``: :class:`ConversationStore`, the methods the server uses, :class:`StoredMessage` and
  :class:`OfflineMessage` (the per-user queue of messages for users with no connection).
- ``location``: :func:`open_store`, which opens the backend a location names.
- ``sqlite``: :class:`SQLiteStore`, one file, the embedded default.
- ``postgres``: ``PostgresStore``, a database several instances share (``--database-url postgresql://…``);
  its schema and start-up migrations are in ``postgres_schema``. Import it from ``trio_voice.storage.postgres``
  (it is not re-exported here, so that importing this package never loads psycopg).
"""

from trio_voice.storage.interface import ROLES as ROLES
from trio_voice.storage.interface import SCHEMA_VERSION as SCHEMA_VERSION
from trio_voice.storage.interface import ConversationStore as ConversationStore
from trio_voice.storage.interface import OfflineMessage as OfflineMessage
from trio_voice.storage.interface import StoredMessage as StoredMessage
from trio_voice.storage.location import open_store as open_store
from trio_voice.storage.sqlite import SQLiteStore as SQLiteStore
from trio_voice.storage.sqlite import open_sqlite_store as open_sqlite_store
