"""One reply, as a nursery: LLM tokens → phrases → parallel TTS → audio in phrase order.

::

    run_turn(request, ...)             the turn nursery (the caller owns the cancel scope around it)
    ├── llm_task     LLM deltas → text events + token channel      (chat turns)
    │   or feed_task the given text → token channel                (speak turns)
    ├── phrase_task  tokens → speakable phrases                    (trio_voice.phrases)
    │   or narration_feed_task  a narration's phrases, as they are (narrate turns)
    └── speak_task   phrases → N TTS workers → sequencer → audio events, in phrase order

Reply audio leaves as PCM16, or encoded (``output_format`` ``opus``, ``mp3``, ``aac``): one encoder per
reply, fed in short pieces (``trio_voice.formats.pcm_pieces``) so the first bytes leave a few ms after
the first PCM, flushed at each phrase's end so a phrase is never held back for the next one, closed
after the last phrase; a cancelled reply's encoder is dropped unflushed. ``TurnRecord`` counts a phrase's
audio from its PCM, whatever the format: the codec's padding per phrase (Opus up to 26.5 ms, MP3 ~50 ms
of priming) is not counted, so a ``response.truncate`` position on the decoded stream can run ahead of
the server's clock by that much per phrase played (documented in protocol/voice.md).

Every channel is opened inside the turn, so cancelling the turn's scope drops whatever tokens, phrases
and audio they buffer, with no flush code. Events leave through ``emit``, an unbuffered send to the
session's single writer: when ``emit`` returns, the writer holds the event, and when it is cancelled,
the event was not delivered (Trio's channel guarantee). That is what makes "nothing stale after
``response.done``" hold by construction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import attrs
import trio

from .codec import codes
from .config import Config
from .engines import LLM, TTS
from .errors import EngineError, LLMError, SynthesisError
from .events import AudioReady, PhraseReady, TextDelta, WarningEvent
from .formats import OutputEncoder, make_output_encoder, pcm_pieces
from .phrases import phrase_task
from .repetition import RepetitionGuard
from .turn_control import TurnKind

logger = logging.getLogger(__name__)

Emit = Callable[[Any], Awaitable[None]]

# Longest audio event, in seconds: bounds frame size and lets a client stop playback at a fine grain.
MAX_AUDIO_EVENT_SECONDS = 0.5


@attrs.frozen(kw_only=True)
class TurnRequest:
    """What a turn is asked to do: ask the LLM (``TurnKind.CHAT``) or say ``text`` (``TurnKind.SPEAK``)."""

    response_id: str
    kind: TurnKind
    text: str
    messages: Sequence[Mapping[str, str]] = ()
    started_at: float  # trio.current_time() when the request arrived
    output_audio: bool = True
    output_format: str = "pcm16"  # or an encoded format of trio_voice.formats
    phrases: Sequence[str] = ()  # narrate turns: the phrases to say, as they are
    # Called once a phrase's audio is all sent (narration progress): (index in this turn, audio ms).
    on_phrase_sent: Callable[[int, float], Awaitable[None]] | None = None


@attrs.define
class TurnRecord:
    """What a turn actually sent, filled in as it goes; read after the turn ends, however it ended."""

    started_at: float
    text: str = ""  # text deltas sent
    tokens: int = 0
    phrases: list[str] = attrs.field(factory=list)  # phrases whose audio (or text) was sent, in order
    phrase_audio_ms: list[float] = attrs.field(factory=list)  # audio sent per phrase
    marks: dict[str, float] = attrs.field(factory=dict)  # event name → trio time of its first occurrence
    heard_ms: float | None = None  # the client played only this much audio (response.truncate)
    stored: bool = False  # the reply has been handed to the conversation store

    @property
    def kept_text(self) -> str:
        """What the conversation keeps: the text sent, cut to the words heard when the client said so."""
        if self.heard_ms is None or self.heard_ms >= self.audio_ms:
            return self.text
        return self.heard_text(self.heard_ms)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, trio.current_time())

    @property
    def audio_ms(self) -> float:
        return sum(self.phrase_audio_ms)

    def metrics(self) -> dict[str, float | int | None]:
        def since_start(name: str) -> float | None:
            at = self.marks.get(name)
            return None if at is None else round((at - self.started_at) * 1000.0, 1)

        return {
            "llm_first_token_ms": since_start("llm_first_token"),
            "first_phrase_ms": since_start("first_phrase"),
            "first_audio_ms": since_start("first_audio"),
            "total_ms": round((trio.current_time() - self.started_at) * 1000.0, 1),
            "tokens": self.tokens,
            "phrases": len(self.phrases),
            "audio_ms": round(self.audio_ms, 1),
        }

    def heard_text(self, audio_end_ms: float) -> str:
        """The words a listener heard after ``audio_end_ms`` of this turn's audio (proportional within a phrase)."""
        heard: list[str] = []
        remaining = audio_end_ms
        for phrase, duration in zip(self.phrases, self.phrase_audio_ms, strict=False):
            if remaining >= duration:
                heard.append(phrase)
                remaining -= duration
                continue
            words = phrase.split()
            if duration > 0 and remaining > 0:
                heard.extend(words[: int(len(words) * remaining / duration)])
            break
        return " ".join(heard)


async def run_turn(
    request: TurnRequest, emit: Emit, *, llm: LLM, tts: TTS, config: Config, record: TurnRecord
) -> None:
    """Run one reply to its end, emitting its events between ``response.created`` and ``response.done``
    (both of which are the caller's).

    Cancellation: cancel the caller's scope; every task and channel of the turn is gone when this returns.
    Error handling: an ``LLMError`` propagates (the caller turns it into a failed reply); a phrase that
    fails to synthesize becomes a ``WarningEvent`` and the reply goes on as text.
    """
    with _unwrap_engine_error():
        await _run_stages(request, emit, llm=llm, tts=tts, config=config, record=record)


@contextmanager
def _unwrap_engine_error() -> Iterator[None]:
    """The turn nursery wraps a stage's failure in an ExceptionGroup; when the only failure is one
    engine error, raise that error alone, so callers can ``except EngineError``. Done once, here."""
    try:
        yield
    except BaseExceptionGroup as group:
        engine_errors, rest = group.split(EngineError)
        if engine_errors is None or rest is not None:
            raise
        first = engine_errors
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _run_stages(
    request: TurnRequest, emit: Emit, *, llm: LLM, tts: TTS, config: Config, record: TurnRecord
) -> None:
    async with trio.open_nursery() as nursery:
        token_tx, token_rx = trio.open_memory_channel[str](0)
        phrase_tx, phrase_rx = trio.open_memory_channel[str](0)
        if request.kind == TurnKind.NARRATE:
            token_tx.close()
            token_rx.close()
            nursery.start_soon(narration_feed_task, request, phrase_tx, emit, record)
        else:
            if request.kind == TurnKind.CHAT:
                nursery.start_soon(
                    partial(llm_task, llm, request, token_tx, emit, config=config, record=record)
                )
            else:
                nursery.start_soon(feed_task, request, token_tx, emit, record)
            nursery.start_soon(partial(phrase_task, token_rx, phrase_tx, config=config))
        nursery.start_soon(
            partial(speak_task, phrase_rx, request, emit, tts=tts, config=config, record=record)
        )


async def llm_task(
    llm: LLM,
    request: TurnRequest,
    token_tx: trio.MemorySendChannel[str],
    emit: Emit,
    *,
    config: Config,
    record: TurnRecord,
) -> None:
    """Stream the LLM's reply: each delta becomes a text event and a token for the phrase stage.

    The first-token and stall timeouts live here, as a deadline on one cancel scope that every delta
    pushes forward; when it fires the reply fails with ``llm_timeout``. The deadline measures only the
    LLM: it is off while a delta waits for the writer or the phrase stage (a slow TTS is waited for). A reply that starts looping
    (:class:`~trio_voice.repetition.RepetitionGuard`) is cut at the word that closed the loop: what came
    before is spoken, a ``reply_repeating`` warning says why it stopped, and the reply completes.
    """
    guard = RepetitionGuard()
    async with token_tx:
        with trio.CancelScope(deadline=trio.current_time() + config.llm_first_token_timeout) as scope:
            with trio.CancelScope() as stop:

                async def on_delta(delta: str) -> None:
                    record.mark("llm_first_token")
                    record.tokens += 1
                    if guard.feed(delta):
                        stop.cancel()  # lands in stream_chat, which closes the HTTP stream
                        return
                    # Waiting for the writer and the phrase stage is this pipeline's own backpressure
                    # (a slow TTS, a slow client), not the LLM stalling: no deadline runs meanwhile.
                    scope.deadline = math.inf
                    await emit(TextDelta(request.response_id, delta))
                    record.text += delta
                    await token_tx.send(delta)
                    scope.deadline = trio.current_time() + config.llm_stall_timeout

                result = await llm.stream_chat(request.messages, on_delta)
            scope.deadline = math.inf
        if scope.cancelled_caught:
            waited = "first token" if "llm_first_token" not in record.marks else "next token"
            raise LLMError(f"the LLM sent no {waited} in time", code="llm_timeout")
        if stop.cancelled_caught:
            logger.warning(
                "reply %s was repeating itself; stopped after %d tokens", request.response_id, record.tokens
            )
            await emit(
                WarningEvent(
                    codes.WARNING_REPLY_REPEATING,
                    f"the reply started repeating itself; it was stopped after {record.tokens} tokens",
                    request.response_id,
                )
            )
        elif result.tokens:
            record.tokens = result.tokens


async def feed_task(
    request: TurnRequest, token_tx: trio.MemorySendChannel[str], emit: Emit, record: TurnRecord
) -> None:
    """A ``speak`` turn: the given text, word by word, stands in for LLM tokens."""
    async with token_tx:
        await emit(TextDelta(request.response_id, request.text))
        record.text = request.text
        for word in request.text.split(" "):
            await token_tx.send(word + " ")


async def narration_feed_task(
    request: TurnRequest, phrase_tx: trio.MemorySendChannel[str], emit: Emit, record: TurnRecord
) -> None:
    """A ``narrate`` turn: its phrases go to the TTS stage one by one, each with its text delta.

    The phrase channel is unbuffered, so this runs no further ahead than the TTS stage takes phrases.
    """
    async with phrase_tx:
        for phrase in request.phrases:
            delta = phrase if not record.text else f" {phrase}"
            await emit(TextDelta(request.response_id, delta))
            record.text += delta
            await phrase_tx.send(phrase)


async def speak_task(
    phrase_rx: trio.MemoryReceiveChannel[str],
    request: TurnRequest,
    emit: Emit,
    *,
    tts: TTS,
    config: Config,
    record: TurnRecord,
) -> None:
    """Synthesize phrases with up to ``config.tts_workers`` at once and emit their audio strictly in order.

    The sequencer: phrase *i* gets its own channel; workers fill them as they can; the sequencer drains
    them one after another. Order needs no bookkeeping, and everything buffered is bounded: at most
    ``tts_workers`` phrases in flight, at most ``audio_buffer`` chunks per phrase.
    """
    async with phrase_rx, trio.open_nursery() as nursery:
        order_tx, order_rx = trio.open_memory_channel[tuple[str, trio.MemoryReceiveChannel[Any]]](
            config.tts_workers
        )
        nursery.start_soon(_sequencer_task, order_rx, request, emit, tts, record)
        slots = trio.Semaphore(config.tts_workers)
        async with order_tx:
            async for phrase in phrase_rx:
                record.mark("first_phrase")
                audio_tx, audio_rx = trio.open_memory_channel[Any](config.audio_buffer)
                if request.output_audio:
                    await slots.acquire()
                    nursery.start_soon(_tts_worker, tts, phrase, audio_tx, slots)
                else:
                    audio_tx.close()
                await order_tx.send((phrase, audio_rx))


async def _tts_worker(
    tts: TTS, phrase: str, audio_tx: trio.MemorySendChannel[Any], slots: trio.Semaphore
) -> None:
    """Synthesize one phrase into its own channel; a failure travels down the channel, in order."""
    try:
        async with audio_tx:
            try:
                await tts.synthesize(phrase, audio_tx.send)
            except SynthesisError as exc:
                logger.warning("synthesis failed for a phrase: %s", exc)
                await audio_tx.send(exc)
    finally:
        slots.release()


async def _sequencer_task(
    order_rx: trio.MemoryReceiveChannel[tuple[str, trio.MemoryReceiveChannel[Any]]],
    request: TurnRequest,
    emit: Emit,
    tts: TTS,
    record: TurnRecord,
) -> None:
    bytes_per_ms = tts.sample_rate * 2 / 1000.0
    max_event_bytes = int(tts.sample_rate * MAX_AUDIO_EVENT_SECONDS) * 2
    encoder: OutputEncoder | None = None
    if request.output_audio and request.output_format != "pcm16":
        encoder = make_output_encoder(request.output_format, tts.sample_rate)

    async def send_encoded(index: int, data: bytes, pcm_ms: float = 0.0) -> None:
        assert encoder is not None
        if data:
            await emit(
                AudioReady(request.response_id, index, data, encoder.sample_rate, request.output_format, pcm_ms)
            )
            record.mark("first_audio")

    async with order_rx:
        index = 0
        async for phrase, audio_rx in order_rx:
            async with audio_rx:
                await emit(PhraseReady(request.response_id, index, phrase))
                record.phrases.append(phrase)
                record.phrase_audio_ms.append(0.0)
                async for item in audio_rx:
                    if isinstance(item, SynthesisError):
                        await emit(
                            WarningEvent(
                                item.code, f"phrase {index} could not be spoken: {item}", request.response_id
                            )
                        )
                        continue
                    if encoder is not None:
                        for piece in pcm_pieces(item, tts.sample_rate):
                            await send_encoded(index, encoder.encode(piece), len(piece) / bytes_per_ms)
                            record.phrase_audio_ms[-1] += len(piece) / bytes_per_ms
                        continue
                    for start in range(0, len(item), max_event_bytes):
                        piece = item[start : start + max_event_bytes]
                        await emit(
                            AudioReady(
                                request.response_id, index, piece, tts.sample_rate, pcm_ms=len(piece) / bytes_per_ms
                            )
                        )
                        record.mark("first_audio")
                        record.phrase_audio_ms[-1] += len(piece) / bytes_per_ms
                if encoder is not None:
                    await send_encoded(index, encoder.flush())
            if request.on_phrase_sent is not None:
                await request.on_phrase_sent(index, record.phrase_audio_ms[-1])
            index += 1
        if encoder is not None and "first_audio" in record.marks:
            await send_encoded(max(index - 1, 0), encoder.close())
