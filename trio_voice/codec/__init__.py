"""The sans-I/O codec of wire protocol v1 (``protocol/``): client frames in, typed messages out; events in, JSON out.

Imports neither trio nor a socket library. ``client`` parses what clients send, ``server`` renders what
the server sends (and parses it back, for clients written in Python), ``codes`` names every stable code.
"""

from . import codes as codes
from .client import CLIENT_MESSAGE_TYPES as CLIENT_MESSAGE_TYPES
from .client import INPUT_AUDIO_FORMATS as INPUT_AUDIO_FORMATS
from .client import OUTPUT_AUDIO_FORMATS as OUTPUT_AUDIO_FORMATS
from .client import SUPPORTED_SAMPLE_RATES as SUPPORTED_SAMPLE_RATES
from .client import TURN_DETECTION_TYPES as TURN_DETECTION_TYPES
from .client import ClientMessage as ClientMessage
from .client import InputAudioAppend as InputAudioAppend
from .client import InputAudioClear as InputAudioClear
from .client import InputAudioCommit as InputAudioCommit
from .client import InputAudioFrame as InputAudioFrame
from .client import MessageCreate as MessageCreate
from .client import Narrate as Narrate
from .client import NarrationCancel as NarrationCancel
from .client import NarrationPause as NarrationPause
from .client import NarrationResume as NarrationResume
from .client import Ping as Ping
from .client import ResponseCancel as ResponseCancel
from .client import ResponseTruncate as ResponseTruncate
from .client import SessionUpdate as SessionUpdate
from .client import Speak as Speak
from .client import Transcribe as Transcribe
from .client import TurnDetection as TurnDetection
from .client import check_frame_size as check_frame_size
from .client import decode_binary as decode_binary
from .client import decode_text as decode_text
from .client import encode_client as encode_client
from .connection import ClientConnection as ClientConnection
from .connection import ServerConnection as ServerConnection
from .controls import CLIENT_PRESENCE as CLIENT_PRESENCE
from .controls import MessageDelivered as MessageDelivered
from .controls import PresenceSet as PresenceSet
from .controls import ResponsePause as ResponsePause
from .controls import ResponseResume as ResponseResume
from .controls import SessionResume as SessionResume
from .controls import TypingStart as TypingStart
from .controls import TypingStop as TypingStop
from .server import SERVER_EVENT_TYPES as SERVER_EVENT_TYPES
from .server import ServerMessage as ServerMessage
from .server import SessionLimits as SessionLimits
from .server import decode_server as decode_server
from .server import decode_server_event as decode_server_event
from .server import encode_event as encode_event
from .server import event_type as event_type
from .server import render_session_config as render_session_config
