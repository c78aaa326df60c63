"""One realtime response, from ``response.created`` to ``response.done``: its state and its events.

A trio-voice reply becomes one realtime response with exactly one output item (an assistant message)
holding one content part: ``output_audio`` with its transcript, or ``output_text`` for a text-only
response. The reply's neutral events map onto it like this:

- ``ReplyCreated`` → ``response.created``, ``response.output_item.added``, ``conversation.item.added``;
- the first event of the response's modality → ``response.content_part.added``;
- ``PhraseReady`` → ``response.output_audio_transcript.delta`` (the transcript follows the audio, phrase
  by phrase; the LLM's ``TextDelta`` run ahead of it and are not sent for audio responses);
- ``AudioReady`` → ``response.output_audio.delta`` (resampled, cut into deltas of 100-200 ms; the next
  ``PhraseReady`` sends a phrase's last, shorter one, so no words wait for the next phrase);
- ``TextDelta`` → ``response.output_text.delta`` for a text-only response (phrases and audio are ignored);
- ``ReplyDone`` → the ``*.done`` events, ``response.output_item.done``, ``conversation.item.done`` and
  ``response.done`` with the full ``response`` object, its ``status_details`` and ``usage``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import attrs

from trio_voice import events
from trio_voice.codec import codes as native_codes

from . import codes
from .formats import AudioFormat, OutputAudio
from .frames import Frames
from .items import Content, Item
from .session_update import AUDIO, render_modalities


@attrs.define
class Response:
    """A response between ``response.created`` and ``response.done``."""

    id: str
    item: Item
    modalities: tuple[str, ...]
    output_format: AudioFormat
    voice: str
    conversation_id: str | None
    metadata: Mapping[str, str] | None = None
    audio: OutputAudio | None = None  # audio responses: the encoder of this response's deltas
    part_added: bool = False
    transcript: str = ""  # audio responses: the transcript deltas sent, joined
    text: str = ""  # text responses: the text deltas sent, joined

    @property
    def has_audio(self) -> bool:
        return self.modalities == AUDIO

    @property
    def where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0, "content_index": 0}

    def part(self) -> dict[str, Any]:
        """The content part as ``response.content_part.*`` spell it (``audio`` / ``text``)."""
        if self.has_audio:
            return {"type": "audio", "audio": None, "transcript": self.transcript}
        return {"type": "text", "text": self.text}

    def render(
        self,
        dialect: str,
        *,
        status: str,
        status_details: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
        output: bool = False,
    ) -> dict[str, Any]:
        """The ``response`` object; ``output`` adds the finished item (``response.done``)."""
        obj: dict[str, Any] = {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": status_details,
            "output": [self.item.render(dialect)] if output else [],
            "conversation_id": self.conversation_id,
        }
        if dialect == codes.BETA:
            obj["modalities"] = render_modalities(self.modalities, beta=True)
            obj["voice"] = self.voice
            obj["output_audio_format"] = self.output_format.to_beta()
        else:
            obj["output_modalities"] = list(self.modalities)
            obj["audio"] = {"output": {"format": self.output_format.to_ga(), "voice": self.voice}}
        obj["max_output_tokens"] = "inf"
        obj["usage"] = usage
        obj["metadata"] = None if self.metadata is None else dict(self.metadata)
        return obj


def created(response: Response, frames: Frames) -> list[dict[str, Any]]:
    """The events that open ``response`` (its item is already in the conversation)."""
    item = response.item.render(frames.dialect)
    return frames.for_dialect(
        [
            frames.event("response.created", response=response.render(frames.dialect, status="in_progress")),
            frames.event("response.output_item.added", response_id=response.id, output_index=0, item=item),
            frames.event("conversation.item.added", previous_item_id=response.item.previous_id, item=item),
        ]
    )


def content(
    response: Response, event: events.TextDelta | events.PhraseReady | events.AudioReady, frames: Frames
) -> list[dict[str, Any]]:
    """The events one piece of a reply becomes (none for the other modality's pieces)."""
    ours = isinstance(event, events.TextDelta) != response.has_audio
    if not ours:
        return []
    out = []
    if not response.part_added:
        response.part_added = True
        out.append(frames.event("response.content_part.added", **response.where, part=response.part()))
    match event:
        case events.TextDelta():
            response.text += event.delta
            out.append(frames.event("response.output_text.delta", **response.where, delta=event.delta))
        case events.PhraseReady():
            if response.audio is not None and event.index > 0:  # the previous phrase's audio is complete
                out += _audio_deltas(response, response.audio.end_phrase(), frames)
            delta = event.text if not response.transcript else " " + event.text
            response.transcript += delta
            response.item.phrase_text[event.index] = event.text
            out.append(frames.event("response.output_audio_transcript.delta", **response.where, delta=delta))
        case events.AudioReady():
            assert response.audio is not None
            item = response.item
            item.phrase_ms[event.index] = item.phrase_ms.get(event.index, 0.0) + (
                len(event.audio) / 2 * 1000.0 / event.sample_rate
            )
            out += _audio_deltas(response, response.audio.feed(event.audio, event.sample_rate), frames)
    _sync_item(response)
    return frames.for_dialect(out)


def _sync_item(response: Response) -> None:
    """Bring the item's content up to date (``conversation.item.retrieve`` shows a response in progress):
    what was sent, or for a truncated audio item, what was heard."""
    item = response.item
    if response.has_audio:
        kept = response.transcript if item.truncated_ms is None else item.heard_transcript(item.truncated_ms)
        item.content = [Content("output_audio", transcript=kept)]
    else:
        item.content = [Content("output_text", text=response.text)]


def _audio_deltas(response: Response, chunks: list[bytes], frames: Frames) -> list[dict[str, Any]]:
    assert response.audio is not None
    response.item.audio_ms = response.audio.sent_ms
    return [
        frames.event(
            "response.output_audio.delta", **response.where, delta=base64.b64encode(chunk).decode("ascii")
        )
        for chunk in chunks
    ]


def done(response: Response, event: events.ReplyDone, frames: Frames) -> list[dict[str, Any]]:
    """The events that close ``response``, ending with ``response.done``.

    A completed (or failed) response sends its held-back audio tail first; a cancelled one drops it:
    nothing more of an interrupted response is played.
    """
    status, details = final_status(event.status, event.reason)
    out = []
    if response.audio is not None and status != "cancelled":
        out += _audio_deltas(response, response.audio.finish(), frames)
    item = response.item
    if response.part_added:
        if response.has_audio:
            out.append(frames.event("response.output_audio.done", **response.where))
            out.append(
                frames.event(
                    "response.output_audio_transcript.done", **response.where, transcript=response.transcript
                )
            )
        else:
            out.append(frames.event("response.output_text.done", **response.where, text=response.text))
        out.append(frames.event("response.content_part.done", **response.where, part=response.part()))
        _sync_item(response)
    item.status = "completed" if status == "completed" else "incomplete"
    rendered = item.render(frames.dialect)
    out.append(
        frames.event("response.output_item.done", response_id=response.id, output_index=0, item=rendered)
    )
    out.append(frames.event("conversation.item.done", previous_item_id=item.previous_id, item=rendered))
    body = response.render(
        frames.dialect,
        status=status,
        status_details=details,
        usage=usage(event.metrics, frames.dialect),
        output=True,
    )
    out.append(frames.event("response.done", response=body))
    return frames.for_dialect(out)


def final_status(status: str, reason: str | None) -> tuple[str, dict[str, Any] | None]:
    """trio-voice's reply ``status`` and ``reason`` → the realtime ``status`` and ``status_details``.

    ``completed`` has no details. A cancel keeps the API's reason where it has one (``turn_detected``,
    ``client_cancelled``) and has none otherwise (a server shutdown). A failure carries the stable
    trio-voice error code (``llm_timeout`` …) as a ``server_error``.
    """
    if status == native_codes.STATUS_COMPLETED:
        return "completed", None
    if reason in codes.INCOMPLETE_REASONS:
        return "incomplete", {"type": "incomplete", "reason": codes.INCOMPLETE_REASONS[reason], "error": None}
    if status == native_codes.STATUS_CANCELLED:
        return "cancelled", {
            "type": "cancelled",
            "reason": codes.CANCEL_REASONS.get(reason or ""),
            "error": None,
        }
    error = {
        "type": codes.SERVER_ERROR,
        "code": reason,
        "message": native_codes.ERROR_CODES.get(reason or "", "the response failed"),
    }
    return "failed", {"type": "failed", "reason": None, "error": error}


def usage(metrics: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    """The ``usage`` object with all its keys. trio-voice counts the LLM's output tokens (``metrics.tokens``);
    it does not tokenize audio or count prompt tokens, so those are 0."""
    out = int(metrics.get("tokens") or 0)
    input_details: dict[str, Any] = {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0}
    if dialect != codes.BETA:
        input_details["image_tokens"] = 0
        input_details["cached_tokens_details"] = {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}
    return {
        "total_tokens": out,
        "input_tokens": 0,
        "output_tokens": out,
        "input_token_details": input_details,
        "output_token_details": {"text_tokens": out, "audio_tokens": 0},
    }
