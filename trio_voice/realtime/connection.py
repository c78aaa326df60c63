"""The realtime connection's state machine, sans I/O: client frames in, realtime server events out.

``RealtimeConnection`` is to the OpenAI Realtime API what ``h11.Connection`` is to HTTP: it owns the
protocol's state and nothing else. Its rules:

- ``receive(frame)`` parses one client frame and checks it against the state (does the item exist, is a
  response running, is there audio to commit). It applies what the client changed (session settings,
  items added or deleted, the input buffer) and returns the event with the fields the session core
  needs filled in (input audio at the recognizer's rate, item and response ids). It is ``parse``
  (the frame alone, nothing changes) then ``accept`` (the state), so that a session can apply its
  rate limits between the two and refuse an event before it changed anything. The returned event's
  ``event_id`` is a request id unique in the connection (clients may omit or reuse theirs): the core
  echoes it as ``request_id``, and ``client_event_id`` maps it back to the client's own for ``error``
  events. A refusal raises ``RealtimeProtocolError`` and leaves the state unchanged.
- ``send(event, request_id=...)`` takes a protocol-neutral event of the session core
  (``trio_voice.events``) or a client event ``receive`` returned, and returns the realtime server
  events it becomes, in the order the API sends them, each with a fresh ``event_id``. Client events go
  back through ``send`` so that their acknowledgements (``conversation.item.added``,
  ``input_audio_buffer.committed`` …) are rendered by the session's single writer, in order with all
  the rest. ``request_id`` is the (request) ``event_id`` of the client event that caused a neutral event.
- It owns event ids, item ids and their order, the input buffer's bookkeeping and each response from
  ``response.created`` to ``response.done``. An event of a response after its ``response.done``, of a
  response never created, or a second response while one runs, is our bug: ``LocalProtocolError``.
- ``error(exc)`` renders any trio-voice error as a realtime ``error`` event.

Neither trio nor a socket is imported; the tests drive it with plain calls.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Final

import attrs

from trio_voice import events
from trio_voice.errors import LocalProtocolError, TrioVoiceError
from trio_voice.ids import new_id as default_new_id

from . import codes, response
from .client import (
    ClientEvent,
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ConversationItemTruncate,
    InputAudio,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    InputText,
    ResponseCancel,
    ResponseCreate,
    parse_client_event,
)
from .formats import OutputAudio, convert_clip
from .frames import Frames
from .input_buffer import InputBuffer, committed
from .items import ROOT, Content, Conversation, Item, added
from .reader import RealtimeProtocolError
from .response import Response
from .session_config import SessionConfig
from .session_update import DEFAULT_VOICE, SessionUpdate

# Responses remembered as done, so that a late event of one is caught as the bug it is.
KEPT_DONE_RESPONSES: Final = 256
# Client event_ids remembered for echoing in errors the core reports later (a reply's failure comes
# seconds after its response.create; a thousand events later nobody is waiting for it).
KEPT_CLIENT_IDS: Final = 1024
# The session core's code for a failed transcription (trio_voice.errors.RecognitionError).
STT_FAILED: Final = "stt_failed"


class RealtimeConnection:
    """The protocol state of one realtime client connection (see the module docstring for the rules).

    Args:
        model: the ``model`` the client asked for (echoed in the session; trio-voice's own models answer).
        dialect: ``codes.GA`` (default) or ``codes.BETA`` (``OpenAI-Beta: realtime=v1``).
        voice: the voice name reported until the client names one (Piper speaks whatever the name).
        max_text_chars: the longest text a client event may carry (``Config.max_text_chars``).
        new_id: makes ids from a prefix (``event``, ``item``); tests pass a deterministic one.
    """

    def __init__(
        self,
        *,
        model: str,
        dialect: str = codes.GA,
        voice: str = DEFAULT_VOICE,
        max_text_chars: int = 4000,
        new_id: Callable[[str], str] = default_new_id,
    ) -> None:
        if dialect not in codes.DIALECTS:
            raise ValueError(f"dialect must be one of {sorted(codes.DIALECTS)}, not {dialect!r}")
        self.dialect = dialect
        self.max_text_chars = max_text_chars
        self.frames = Frames(new_id, dialect)
        self.config = SessionConfig(model=model, voice=voice)
        self.conversation = Conversation()
        self.session_id: str | None = None
        self.conversation_id: str | None = None
        self._new_id = new_id
        self._request_prefix = new_id("req") + "."  # the request ids given to accepted client events
        self._request_count = 0
        self._client_ids: OrderedDict[str, str] = OrderedDict()  # request id → the client's event_id
        self.input = InputBuffer(self.config.input_format, self.conversation, self.frames, new_id)
        self._created: dict[str, Item] = {}  # item id → item added by a client event, until its ack
        self._pending: dict[str, ResponseCreate] = {}  # accepted response.create, response not created yet
        self._active: Response | None = None
        self._done: deque[str] = deque(maxlen=KEPT_DONE_RESPONSES)

    @property
    def active_response_id(self) -> str | None:
        return None if self._active is None else self._active.id

    # --- client → server ---------------------------------------------------------------------------
    def receive(self, frame: str | bytes) -> ClientEvent:
        """Parse one client frame and check it against the state; see the module docstring.

        Raises:
            RealtimeProtocolError: the event cannot be accepted now (the connection is unchanged).
        """
        return self.accept(self.parse(frame))

    def parse(self, frame: str | bytes) -> ClientEvent:
        """Parse one client frame into its event, with the client's own ``event_id``; nothing changes.

        Raises:
            RealtimeProtocolError: the frame is no event trio-voice accepts.
        """
        return parse_client_event(frame, dialect=self.dialect, max_text_chars=self.max_text_chars)

    def accept(self, event: ClientEvent) -> ClientEvent:
        """Check a parsed event against the state and apply it; return it as the core needs it, its
        ``event_id`` now a request id unique in the connection (see the module docstring).

        Raises:
            RealtimeProtocolError: the event cannot be accepted now (the connection is unchanged).
        """
        # Clients may leave event_id out or reuse one; the core needs a unique id to answer to.
        self._request_count += 1
        request_id = f"{self._request_prefix}{self._request_count}"
        if event.event_id is not None:
            self._client_ids[request_id] = event.event_id
            while len(self._client_ids) > KEPT_CLIENT_IDS:
                self._client_ids.popitem(last=False)
        event = attrs.evolve(event, event_id=request_id)
        match event:
            case SessionUpdate():
                if event.input_format is not None:
                    self.input.set_format(event.input_format)
                self.config.apply(event)
            case InputAudioBufferAppend():
                return attrs.evolve(event, pcm16=self._convert(event, event.audio))
            case InputAudioBufferCommit():
                return self._receive_commit(event)
            case InputAudioBufferClear():
                self.input.clear()
            case ConversationItemCreate():
                return self._receive_item(event)
            case ConversationItemDelete() | ConversationItemRetrieve() | ConversationItemTruncate():
                return self._receive_item_change(event)
            case ResponseCreate():
                if self._active is not None or self._pending:
                    running = self._active.id if self._active is not None else "(starting)"
                    raise self._refuse(
                        event,
                        f"Conversation already has an active response in progress: {running}. "
                        "Wait until the response is finished before creating a new one.",
                        codes.CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE,
                    )
                self._pending[event.event_id] = event
            case ResponseCancel():
                active = self._active
                if (active is None and not self._pending) or (
                    event.response_id is not None and (active is None or active.id != event.response_id)
                ):
                    message = "Cancellation failed: no active response found"
                    raise self._refuse(event, message, codes.RESPONSE_CANCEL_NOT_ACTIVE)
        return event

    def client_event_id(self, request_id: str | None) -> str | None:
        """The client's own ``event_id`` of the event ``receive`` gave ``request_id`` (``None`` if it had none)."""
        return None if request_id is None else self._client_ids.get(request_id)

    def _refuse(self, event: Any, message: str, code: str, param: str | None = None) -> RealtimeProtocolError:
        return RealtimeProtocolError(
            message, code=code, param=param, event_id=self.client_event_id(event.event_id)
        )

    def _convert(self, event: Any, audio: bytes, *, clip: bool = False) -> bytes:
        try:
            return convert_clip(self.input.format, audio) if clip else self.input.append(audio)
        except ValueError:
            message = f"Invalid audio: {len(audio)} bytes is not a whole number of PCM16 samples."
            raise self._refuse(event, message, codes.INVALID_VALUE, "audio") from None

    def _receive_commit(self, event: InputAudioBufferCommit) -> InputAudioBufferCommit:
        if self.config.server_vad:
            # The core ends the utterance in progress; its speech_stopped then commits it.
            if not self.input.in_speech:
                message = "Error committing input audio buffer: no speech is buffered."
                raise self._refuse(event, message, codes.INPUT_AUDIO_BUFFER_COMMIT_EMPTY)
            return event
        if self.input.buffered_ms < codes.MIN_COMMIT_MS:
            raise self._refuse(
                event,
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{codes.MIN_COMMIT_MS}ms of audio, but buffer only has {self.input.buffered_ms:.2f}ms of audio.",
                codes.INPUT_AUDIO_BUFFER_COMMIT_EMPTY,
            )
        assert event.event_id is not None
        item = self.input.commit(event.event_id)
        self._created[item.id] = item
        return attrs.evolve(event, item_id=item.id)

    def _receive_item(self, event: ConversationItemCreate) -> ConversationItemCreate:
        assert event.event_id is not None
        if event.item_id is not None and event.item_id in self.conversation:
            message = f"Item with id '{event.item_id}' already exists."
            raise self._refuse(event, message, codes.DUPLICATE_ITEM_ID, "item.id")
        previous = event.previous_item_id
        at_end = previous in (None, self.conversation.last_id) or (
            previous == ROOT and not len(self.conversation)
        )
        if not at_end:
            if previous != ROOT and previous not in self.conversation:
                message = f"Item with id '{previous}' not found."
                raise self._refuse(event, message, codes.ITEM_NOT_FOUND, "previous_item_id")
            message = (
                "Inserting an item before the end of the conversation is not supported by this server; "
                "leave 'previous_item_id' out to append."
            )
            raise self._refuse(event, message, codes.UNSUPPORTED_FEATURE, "previous_item_id")
        parts: list[InputText | InputAudio] = []
        content: list[Content] = []
        seconds = 0.0
        for part in event.content:
            if isinstance(part, InputText):
                parts.append(part)
                content.append(Content("input_text", text=part.text))
            else:
                parts.append(attrs.evolve(part, pcm16=self._convert(event, part.audio, clip=True)))
                content.append(Content("input_audio", transcript=part.transcript))
                seconds += self.input.format.duration_ms(part.audio) / 1000
        item = Item(event.item_id or self._new_id("item"), "user", content, input_seconds=seconds or None)
        if any(isinstance(part, InputAudio) and part.transcript is None for part in event.content):
            self.input.expect_transcript(event.event_id, item.id)
        self.conversation.append(item)
        self._created[item.id] = item
        return attrs.evolve(event, item_id=item.id, content=tuple(parts))

    def _receive_item_change(self, event: Any) -> Any:
        item = self.conversation.get(event.item_id)
        if item is None:
            raise self._refuse(
                event, f"Item with id '{event.item_id}' not found.", codes.ITEM_NOT_FOUND, "item_id"
            )
        if isinstance(event, ConversationItemRetrieve):
            return event
        if (
            self._active is not None
            and self._active.item is item
            and isinstance(event, ConversationItemDelete)
        ):
            message = f"Item '{item.id}' belongs to the response in progress; cancel the response first."
            raise self._refuse(event, message, codes.UNSUPPORTED_FEATURE, "item_id")
        if isinstance(event, ConversationItemDelete):
            self.conversation.delete(item.id)
            return attrs.evolve(event, response_id=item.response_id)
        if item.role != "assistant" or not item.content or item.content[0].type != "output_audio":
            raise self._refuse(
                event, f"Item '{item.id}' has no audio to truncate.", codes.INVALID_VALUE, "item_id"
            )
        if event.content_index != 0:
            message = f"Item '{item.id}' has no content part {event.content_index}."
            raise self._refuse(event, message, codes.INVALID_VALUE, "content_index")
        heard = min(event.audio_end_ms, int(item.audio_ms))  # an over-long audio_end_ms is clamped
        item.truncated_ms = heard
        item.content = [Content("output_audio", transcript=item.heard_transcript(heard))]
        return attrs.evolve(event, audio_end_ms=heard, response_id=item.response_id)

    # --- server → client ---------------------------------------------------------------------------
    def send(self, event: Any, *, request_id: str | None = None) -> list[dict[str, Any]]:
        """The realtime server events ``event`` becomes, in order; see the module docstring.

        Raises:
            LocalProtocolError: ``event`` breaks the response lifecycle, or is nothing this renders.
        """
        frames = self.frames
        match event:
            case events.ReplyCreated():
                return self._start(event.response_id, request_id, event.item_id)
            case events.TextDelta() | events.PhraseReady() | events.AudioReady():
                return response.content(self._running(event.response_id), event, frames)
            case events.ReplyDone():
                active = self._running(event.response_id)
                self._active = None
                self._done.append(active.id)
                return response.done(active, event, frames)
            case events.SessionCreated() | events.SessionUpdated():
                self.conversation_id = event.conversation_id
                if isinstance(event, events.SessionCreated):
                    self.session_id = event.session_id
                self.config.sync(event.config)
                name = "session.created" if isinstance(event, events.SessionCreated) else "session.updated"
                return [
                    frames.event(
                        name, session=self.config.render(self.dialect, session_id=self.session_id or "")
                    )
                ]
            case events.SpeechStarted():
                return self.input.speech_started(event.audio_start_ms, event.item_id)
            case events.SpeechStopped():
                return self.input.speech_stopped(event.audio_end_ms)
            case events.TranscriptFinal():
                return self.input.transcript(
                    event.text, request_id, enabled=self.config.transcription.enabled
                )
            case events.ErrorEvent():
                if request_id is not None:
                    self._pending.pop(request_id, None)
                if event.code == STT_FAILED:
                    enabled = self.config.transcription.enabled
                    failed = self.input.transcription_failed(
                        event.code, event.message, request_id, enabled=enabled
                    )
                    if failed is not None:
                        return failed
                return [frames.error(event.code, event.message, event_id=self.client_event_id(request_id))]
            case events.TranscriptPartial() | events.WarningEvent() | events.Pong():
                # Partials would be deltas of an item not added yet; warnings and pongs have no
                # realtime counterpart. See protocol/realtime.md.
                return []
            case events.PresenceUpdate() | events.TypingUpdate() | events.SystemMessage():
                # A session with a user hears its user's other sessions; the API has no users. A system
                # message stays queued for the user's next /v1/voice session (nothing acknowledges it).
                return []
            case InputAudioBufferCommit(item_id=str(item_id)) if item_id in self._created:
                return committed(self._created.pop(item_id), self.frames)
            case ConversationItemCreate(item_id=str(item_id)) if item_id in self._created:
                return added(self._created.pop(item_id), self.frames)
            case ConversationItemCreate() | InputAudioBufferCommit(item_id=str()):
                raise LocalProtocolError(f"{event!r} acknowledged twice")
            case InputAudioBufferClear():
                return [frames.event("input_audio_buffer.cleared")]
            case ConversationItemDelete():
                return [frames.event("conversation.item.deleted", item_id=event.item_id)]
            case ConversationItemTruncate():
                truncated = {"content_index": event.content_index, "audio_end_ms": event.audio_end_ms}
                return [frames.event("conversation.item.truncated", item_id=event.item_id, **truncated)]
            case ConversationItemRetrieve():
                item = self.conversation.get(event.item_id)
                if item is None:  # deleted since it was asked for
                    message = f"Item with id '{event.item_id}' not found."
                    client_id = self.client_event_id(event.event_id)
                    return [frames.error(codes.ITEM_NOT_FOUND, message, event_id=client_id, param="item_id")]
                return [frames.event("conversation.item.retrieved", item=item.render(self.dialect))]
            case (
                SessionUpdate()
                | InputAudioBufferAppend()
                | InputAudioBufferCommit()
                | ResponseCreate()
                | ResponseCancel()
            ):
                return []  # answered by what the core does: session.updated, speech_stopped, a response
        raise LocalProtocolError(f"{event!r} is not an event the realtime connection renders")

    def error(self, exc: TrioVoiceError) -> dict[str, Any]:
        """Render any trio-voice error (a refused client event, an engine failure …) as an ``error`` event."""
        if isinstance(exc, RealtimeProtocolError):
            return self.frames.error(
                exc.code, exc.message, event_id=exc.event_id, param=exc.param, error_type=exc.error_type
            )
        request_id = getattr(exc, "request_id", None)
        return self.frames.error(exc.code, exc.message, event_id=self.client_event_id(request_id))

    # --- responses ---------------------------------------------------------------------------------
    def _running(self, response_id: str) -> Response:
        if response_id in self._done:
            raise LocalProtocolError(f"an event of response {response_id} after its response.done")
        if self._active is None or self._active.id != response_id:
            raise LocalProtocolError(f"an event of response {response_id}, which is not the one running")
        return self._active

    def _start(self, response_id: str, request_id: str | None, item_id: str | None) -> list[dict[str, Any]]:
        if response_id in self._done:
            raise LocalProtocolError(f"response {response_id} created again after its response.done")
        if self._active is not None:
            raise LocalProtocolError(f"response {response_id} created while {self._active.id} is running")
        asked = (self._pending.pop(request_id, None) if request_id is not None else None) or ResponseCreate()
        output_format = asked.output_format or self.config.output_format
        # The core names the message it stores; the item takes that name, so a delete finds it.
        item_id = item_id or self._new_id("item")
        item = Item(item_id, "assistant", [], status="in_progress", response_id=response_id)
        self._active = Response(
            id=response_id,
            item=item,
            modalities=asked.output_modalities or self.config.output_modalities,
            output_format=output_format,
            voice=asked.voice or self.config.voice,
            conversation_id=self.conversation_id,
            metadata=asked.metadata,
        )
        if self._active.has_audio:
            self._active.audio = OutputAudio(output_format)
        self.conversation.append(item)
        return response.created(self._active, self.frames)
