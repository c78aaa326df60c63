"""What a session's receiver hands its listener: audio, commits, clears and one-shot clips (plain data)."""

from __future__ import annotations

import attrs


@attrs.frozen
class AudioIn:
    pcm: bytes  # PCM16LE mono at the session's input rate
    received_at: float


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


ListenItem = AudioIn | Commit | Clear | TranscribeClip
