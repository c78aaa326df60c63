"""What the client is playing: the reply audio the writer sent and when, for the listener's echo guard.

The writer records each audio event it sent (and each reply it stopped), the receiver records what the
client says it heard (``response.truncate``); the listener drains the log into its
:class:`~trio_voice.echo.EchoGuard` on its own clock, before it judges the next microphone chunks. Plain
data and bounded: a listener that does not drain (no voice input) loses only the oldest entries.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

from .codec.codes import ReplyStatus
from .events import AudioReady, ReplyDone

# Entries kept undrained: ~4 minutes of reply audio in 0.5 s events, far more than a listener lags.
MAX_ENTRIES = 512


@attrs.frozen
class Sent:
    pcm: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    sample_rate: int
    at: float  # server time it was sent
    response_id: str


@attrs.frozen
class Stopped:
    at: float  # server time from which the client plays nothing more of the reply


@attrs.frozen
class Heard:
    response_id: str
    played_ms: float  # the client had played this much of the reply …
    at: float  # … at this server time


PlaybackEntry = Sent | Stopped | Heard


@attrs.define
class PlaybackLog:
    entries: deque[PlaybackEntry] = attrs.field(factory=lambda: deque(maxlen=MAX_ENTRIES))

    def on_sent(self, event: Any, at: float) -> None:
        """The writer sent ``event`` at server time ``at`` (call it for every event; most are ignored)."""
        if isinstance(event, AudioReady):
            if event.format == "pcm16":  # encoded output (Opus, MP3) is not followed: the guard needs PCM
                self.entries.append(Sent(event.audio, event.sample_rate, at, event.response_id))
        elif isinstance(event, ReplyDone) and event.status == ReplyStatus.CANCELLED:
            self.entries.append(Stopped(at))  # a client stops playing a cancelled reply at once

    def heard(self, response_id: str, played_ms: float, at: float) -> None:
        """The client played ``played_ms`` of reply ``response_id`` and stopped (``response.truncate``)."""
        self.entries.append(Heard(response_id, played_ms, at))
        self.entries.append(Stopped(at))

    def drain(self) -> list[PlaybackEntry]:
        out = list(self.entries)
        self.entries.clear()
        return out
