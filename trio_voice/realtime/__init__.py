"""The OpenAI Realtime API dialect of trio-voice, sans I/O: a second renderer over the neutral events.

Imports neither trio nor a socket library. ``client`` and ``session_update`` parse what realtime clients
send (GA and beta dialects, through ``reader``); ``connection`` is the state machine between those
events and the session core's neutral events (``trio_voice.events``), keeping the session
(``session_config``), the items (``items``), the input buffer (``input_buffer``) and each response
(``response``), and building server events with ``frames``; ``formats`` converts audio at the edge
(24 kHz PCM16, G.711) and ``codes`` names every stable code. ``protocol/realtime.md`` is the contract.
"""

from . import codes as codes
from .client import CLIENT_EVENT_TYPES as CLIENT_EVENT_TYPES
from .client import ClientEvent as ClientEvent
from .client import ConversationItemCreate as ConversationItemCreate
from .client import ConversationItemDelete as ConversationItemDelete
from .client import ConversationItemRetrieve as ConversationItemRetrieve
from .client import ConversationItemTruncate as ConversationItemTruncate
from .client import InputAudio as InputAudio
from .client import InputAudioBufferAppend as InputAudioBufferAppend
from .client import InputAudioBufferClear as InputAudioBufferClear
from .client import InputAudioBufferCommit as InputAudioBufferCommit
from .client import InputText as InputText
from .client import ResponseCancel as ResponseCancel
from .client import ResponseCreate as ResponseCreate
from .client import parse_client_event as parse_client_event
from .connection import RealtimeConnection as RealtimeConnection
from .formats import AudioFormat as AudioFormat
from .frames import encode as encode
from .reader import RealtimeProtocolError as RealtimeProtocolError
from .session_update import SessionUpdate as SessionUpdate
from .session_update import Transcription as Transcription
from .session_update import TurnDetection as TurnDetection
