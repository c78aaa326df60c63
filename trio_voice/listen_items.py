"""What a session's receiver hands its listener: audio, commits, clears and one-shot clips (plain data).

``announced`` on a commit or clip means the receiver already told the session's ``TurnControl`` that a
transcript is coming (``transcription_started``), so that a request it reads next (the realtime API's
``response.create`` right after a commit) is held until the words are stored; the listener then owes
exactly one ``transcription_done``. ``item_id`` names the user message the transcript becomes.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class AudioIn:
    pcm: bytes  # PCM16LE mono at sample_rate
    received_at: float
    sample_rate: int | None = None  # None: the session's input rate (decoded audio says its own)


@attrs.frozen
class Commit:
    request_id: str | None
    item_id: str | None = None
    announced: bool = False


@attrs.frozen
class Clear:
    request_id: str | None


@attrs.frozen
class TranscribeClip:
    """A one-shot clip. With ``item_id`` it is a user message that asks for no reply: its ``text`` (typed
    words of the same message) and transcript are stored as that message."""

    audio: bytes
    sample_rate: int
    request_id: str | None
    language: str | None = None  # None: the recognizer's own
    item_id: str | None = None
    text: str = ""
    announced: bool = False


ListenItem = AudioIn | Commit | Clear | TranscribeClip
