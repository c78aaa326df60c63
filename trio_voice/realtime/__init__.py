"""The OpenAI Realtime API dialect of trio-voice, sans I/O: a second renderer over the neutral events.

Imports neither trio nor a socket library. ``client`` and ``session_config`` parse what realtime clients
send (GA and beta dialects), ``connection`` is the state machine between those events and the session
core's neutral events (``trio_voice.events``), ``response`` and ``items`` hold what it renders,
``formats`` converts audio at the edge (24 kHz PCM16, G.711) and ``codes`` names every stable code.
``protocol/realtime.md`` is the contract.
"""

from .formats import AudioFormat as AudioFormat
