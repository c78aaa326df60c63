"""What a session's receiver hands its listener: audio, commits, clears and one-shot clips (plain data)."""

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


@attrs.frozen
class Clear:
    request_id: str | None


@attrs.frozen
class TranscribeClip:
    audio: bytes
    sample_rate: int
    request_id: str | None
    language: str | None = None  # None: the recognizer's own


ListenItem = AudioIn | Commit | Clear | TranscribeClip
