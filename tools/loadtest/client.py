"""One scripted conversation over trio-websocket: ask, time the reply, interrupt some, think, repeat.

``run_conversation`` opens one session and drives it by a :class:`~tools.loadtest.plan.Plan`, in the
plan's protocol (``/v1/voice``'s own or the realtime API: :mod:`~tools.loadtest.dialects`). Three tasks
share it: the reader (every server frame goes through the dialect's checker, then updates the turn it
belongs to), the microphone (spoken questions and silence in real-time paced frames), and the driver
(the turn script). Each turn becomes a :class:`TurnSample` in the level's
:class:`Recorder`; failures become error counts by kind, never exceptions.

Resource handling: the WebSocket and the tasks live in the conversation's nursery; cancelling the caller
(the level's deadline) ends the conversation at once, and the turn in progress is not recorded.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from .dialects import Checker, Dialect, dialect_for
from .plan import SAMPLE_RATE, Plan, Question
from .report import REPLY_TEXT_CHARS, Recorder, TurnSample
from .resume import ResumableSocket

CONNECT_TIMEOUT = 20.0  # seconds for the handshake and session.created
DISCONNECT_TIMEOUT = 2.0  # seconds for the closing handshake


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000.0, 1)


def _b64_bytes(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=")


@attrs.define(eq=False)
class Probe:
    """The client's view of one turn while it runs; times are ``trio.current_time()`` values."""

    sample: TurnSample
    request_id: str | None = None
    asked_at: float | None = None  # message.create sent, or the last speech frame of the question sent
    interrupt_at: float | None = None
    first_text_at: float | None = None
    first_audio_at: float | None = None
    done_at: float | None = None
    audio_bytes: int = 0
    sample_rate: int = 22050
    replied: trio.Event = attrs.field(factory=trio.Event)  # first audio, or the turn ended without any
    done: trio.Event = attrs.field(factory=trio.Event)

    def end(self, status: str, now: float | None = None) -> None:
        if self.sample.status is None:
            self.sample.status = status
        self.done_at = self.done_at if now is None else now
        self.replied.set()
        self.done.set()

    def finalize(self) -> TurnSample:
        s = self.sample
        s.first_text_ms = _ms(self.asked_at, self.first_text_at)
        s.first_audio_ms = _ms(self.asked_at, self.first_audio_at)
        if s.kind == "voice":
            s.voice_to_voice_ms = s.first_audio_ms
        s.interruption_ms = _ms(self.interrupt_at, self.done_at)
        if s.interruption_ms is not None and s.interruption_ms < 0:
            s.interruption_ms = None  # the reply ended before the interruption went out: nothing to time
        if s.interrupt is not None and s.interruption_ms is None:
            s.interrupt += "_too_late"
        s.reply_audio_s = round(self.audio_bytes / 2 / self.sample_rate, 3)
        return s


@attrs.define(eq=False)
class Utterance:
    """A spoken question queued on the microphone; the events fire as its speech frames go out."""

    question: Question
    started_at: float | None = None
    ended_at: float | None = None
    started: trio.Event = attrs.field(factory=trio.Event)
    ended: trio.Event = attrs.field(factory=trio.Event)


class Microphone:
    """Streams queued speech (then ``tail_silence_s`` of silence) in real-time paced binary frames.

    With ``idle_audio`` it streams silence whenever nothing is queued, like an open microphone. A new
    utterance queued during the tail silence of the previous one starts at once: the user barges in.
    """

    def __init__(self, plan: Plan, dialect: Dialect) -> None:
        self.dialect = dialect
        self.frame_bytes = SAMPLE_RATE * plan.frame_ms // 1000 * 2
        self.frame_s = plan.frame_ms / 1000.0
        self.tail = bytes(int(plan.tail_silence_s * SAMPLE_RATE) * 2)
        self.idle_audio = plan.streams_idle_audio
        self.queue: collections.deque[Utterance] = collections.deque()
        self.wake = trio.Event()

    def say(self, question: Question) -> Utterance:
        utterance = Utterance(question)
        self.queue.append(utterance)
        self.wake.set()
        return utterance

    async def run(self, ws: WebSocketConnection) -> None:
        """Send frames until cancelled or the connection closes (the reader reports that)."""
        silence = bytes(self.frame_bytes)
        next_at = trio.current_time()
        try:
            while True:
                if not self.queue:
                    if self.idle_audio:
                        await ws.send_message(self.dialect.audio(silence))
                        next_at += self.frame_s
                        await trio.sleep_until(next_at)
                        continue
                    self.wake = trio.Event()
                    await self.wake.wait()
                    next_at = trio.current_time()
                    continue
                utterance = self.queue.popleft()
                q = utterance.question
                assert q.pcm is not None
                pcm = q.pcm + self.tail
                for offset in range(0, len(pcm), self.frame_bytes):
                    if offset >= q.speech_end + self.frame_bytes and self.queue:
                        break  # the next utterance (a barge-in) cuts this one's tail silence short
                    await ws.send_message(self.dialect.audio(pcm[offset : offset + self.frame_bytes]))
                    end = offset + self.frame_bytes
                    now = trio.current_time()
                    if utterance.started_at is None and end > q.speech_start:
                        utterance.started_at = now
                        utterance.started.set()
                    if utterance.ended_at is None and end >= q.speech_end:
                        utterance.ended_at = now
                        utterance.ended.set()
                    next_at += self.frame_s
                    await trio.sleep_until(next_at)
        except ConnectionClosed:
            return


@attrs.define(eq=False)
class Conversation:
    """What the reader and the driver of one session share: the turns in flight, keyed by how to find them."""

    recorder: Recorder
    scope: trio.CancelScope
    dialect: Dialect
    by_request: dict[str, Probe] = attrs.field(factory=dict)
    by_response: dict[str, Probe] = attrs.field(factory=dict)
    awaiting_voice: Probe | None = None  # the spoken question whose reply has not started yet
    disconnected: bool = False
    finished: bool = False  # the driver is done: a close from here on is ours

    def on_event(self, event: dict[str, Any], now: float) -> None:
        type_, rid = event["type"], event.get("response_id")
        probe = self.by_response.get(rid) if rid is not None else None
        if type_ == "response.created":
            probe = self.by_request.pop(event.get("request_id") or "", None)
            if probe is None and self.awaiting_voice is not None:
                probe, self.awaiting_voice = self.awaiting_voice, None
            if probe is None:
                self.recorder.error("unexpected_reply")  # e.g. the VAD split one question into two turns
                return
            probe.sample.response_id = rid
            self.by_response[rid] = probe
        elif probe is None:
            self._on_other(event, now)
        elif type_ == "response.text.delta":
            if probe.first_text_at is None:
                probe.first_text_at = now
            probe.sample.reply_chars += len(event["delta"])
        elif type_ == "response.audio.delta":
            if probe.first_audio_at is None:
                probe.first_audio_at = now
                probe.replied.set()
            probe.audio_bytes += _b64_bytes(event["audio"])
            probe.sample_rate = event["sample_rate"]
        elif type_ == "response.done":
            del self.by_response[rid]
            probe.sample.status, probe.sample.reason = event["status"], event["reason"]
            probe.sample.server = dict(event["metrics"])
            probe.sample.reply_text = event["text"][:REPLY_TEXT_CHARS]
            probe.end(event["status"], now)
        elif type_ in ("error", "warning"):
            self.recorder.error(f"{type_}:{event['code']}")

    def _on_other(self, event: dict[str, Any], now: float) -> None:
        type_ = event["type"]
        if type_ in ("error", "warning"):
            self.recorder.error(f"{type_}:{event['code']}")
            refused = self.by_request.pop(event.get("request_id") or "", None)
            if type_ == "error" and refused is not None:
                refused.end("refused", now)  # the message that would have started the turn was refused
        elif type_ == "transcript.final" and self.awaiting_voice is not None and not event.get("request_id"):
            self.awaiting_voice.sample.transcript = event["text"]
            if not event["text"].strip():
                probe, self.awaiting_voice = self.awaiting_voice, None
                probe.end("no_reply", now)  # an empty transcript starts no reply

    async def send(self, ws: WebSocketConnection, frames: list[str]) -> None:
        try:
            for frame in frames:
                await ws.send_message(frame)
        except ConnectionClosed:
            self.lost("send")

    def lost(self, where: str, code: int | None = None) -> None:
        if self.finished:
            return
        if not self.disconnected:
            self.disconnected = True
            self.recorder.error(f"disconnected:{code if code is not None else where}")
        self.scope.cancel()


async def reader_task(ws: WebSocketConnection, checker: Checker, conv: Conversation) -> None:
    while True:
        try:
            frame = await ws.get_message()
        except ConnectionClosed as exc:
            conv.lost("read", exc.reason.code if exc.reason else None)
            return
        event = checker.receive(frame)
        if event is not None:
            conv.on_event(event, trio.current_time())


async def _ask(
    ws, conv: Conversation, mic: Microphone | None, question: Question, probe: Probe, turn: int
) -> Utterance | None:
    if question.pcm is None:
        probe.request_id = f"q{turn}"
        conv.by_request[probe.request_id] = probe
        probe.asked_at = trio.current_time()
        await conv.send(ws, conv.dialect.ask(question.text or "", probe.request_id))
        return None
    assert mic is not None
    conv.awaiting_voice = probe
    return mic.say(question)


async def drive(
    ws,
    conv: Conversation,
    mic: Microphone | None,
    plan: Plan,
    *,
    session: int,
    first_turn: int,
    turns: int | None,
    t0: float,
) -> int:
    """Run turns ``first_turn``, … until ``turns`` are done (or forever; the caller's deadline ends it).

    A barge-in on the last turn is answered too (it is a question already asked), so the count returned
    may be one more than ``turns``.
    """
    turn = first_turn
    stop = None if turns is None else first_turn + turns
    spoken: tuple[Probe, Utterance] | None = None  # a barge-in already being spoken: the next turn
    while stop is None or turn < stop or spoken is not None:
        if spoken is None:
            question = plan.question(session, turn)
            sample = TurnSample(session, turn, question.kind, round(trio.current_time() - t0, 3))
            probe = Probe(sample)
            utterance = await _ask(ws, conv, mic, question, probe, turn)
        else:
            (probe, utterance), spoken = spoken, None
        with trio.move_on_after(plan.turn_timeout) as timeout:
            if utterance is not None:
                await utterance.ended.wait()
                probe.asked_at = utterance.ended_at
                # A reply under way before the last word was even sent answered half a question.
                probe.sample.premature = probe.sample.response_id is not None
            if plan.interrupts(session, turn):
                await probe.replied.wait()
                if not probe.done.is_set():
                    probe.sample.interrupt = plan.interrupt_by
                    if plan.interrupt_by == "cancel":
                        probe.interrupt_at = trio.current_time()
                        await conv.send(ws, [conv.dialect.cancel(probe.sample.response_id)])
                    else:
                        question = plan.barge_in_speech(session, turn)
                        t = round(trio.current_time() - t0, 3)
                        following = Probe(TurnSample(session, turn + 1, "voice", t))
                        barge = await _ask(ws, conv, mic, question, following, turn + 1)
                        assert barge is not None
                        spoken = (following, barge)
                        await barge.started.wait()
                        probe.interrupt_at = barge.started_at
            if plan.drops(session, turn) and isinstance(ws, ResumableSocket):
                await probe.replied.wait()
                if not probe.done.is_set():
                    probe.sample.dropped = True
                    await ws.drop_and_resume()  # mid-reply: the rest must come through the resume
            await probe.done.wait()
        if timeout.cancelled_caught:
            probe.sample.status = "timeout"
            conv.recorder.error("turn_timeout")
            conv.by_response.pop(probe.sample.response_id or "", None)
        conv.recorder.add_sample(probe.finalize())
        turn += 1
        if spoken is None and (stop is None or turn < stop):
            if plan.listen and probe.first_audio_at is not None and probe.sample.interrupt is None:
                # The user hears the whole reply (sent faster than real time) before thinking.
                await trio.sleep_until(probe.first_audio_at + probe.sample.reply_audio_s)
            await trio.sleep(plan.think_time)
    return turn - first_turn


async def run_conversation(
    url: str,
    plan: Plan,
    recorder: Recorder,
    *,
    session: int,
    first_turn: int = 0,
    turns: int | None,
    t0: float,
) -> int | None:
    """One WebSocket session from connect to close: turns ``first_turn`` … (``turns`` of them, or until
    cancelled). Returns how many turns it did, or ``None`` if it failed; never raises for server
    trouble: that is counted in ``recorder``."""
    dialect = dialect_for(plan.protocol, turn_detection=plan.turn_detection)
    checker = dialect.checker()
    recorder.sessions_started += 1
    completed = False
    done = None
    try:
        async with open_websocket_url(
            url, connect_timeout=CONNECT_TIMEOUT, disconnect_timeout=DISCONNECT_TIMEOUT
        ) as ws:
            recorder.sessions_open += 1
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    first = checker.receive(await ws.get_message())
                if first is None or first["type"] != "session.created":
                    code = first.get("code", first["type"]) if first else "undecodable"
                    recorder.error(f"refused:{code}")
                    return
                async with trio.open_nursery() as nursery:
                    conv = Conversation(recorder, nursery.cancel_scope, dialect)
                    mic = Microphone(plan, dialect) if plan.needs_audio else None
                    link = ResumableSocket(ws, first, checker, recorder, url=url, nursery=nursery)
                    await conv.send(link, dialect.setup())
                    nursery.start_soon(reader_task, link, checker, conv)
                    if mic is not None:
                        nursery.start_soon(mic.run, link)
                    done = await drive(
                        link, conv, mic, plan, session=session, first_turn=first_turn, turns=turns, t0=t0
                    )
                    mine = (
                        s.status for s in recorder.samples if s.session == session and s.turn >= first_turn
                    )
                    completed = not conv.disconnected and "timeout" not in set(mine)
                    conv.finished = True
                    await link.close_resumed()
                    nursery.cancel_scope.cancel()
            finally:
                recorder.sessions_open -= 1
        if completed:
            checker.finish()
    except HandshakeError as exc:
        recorder.error(f"connect_failed:{type(exc).__name__}")
    except OSError as exc:
        recorder.error(f"connect_failed:{type(exc).__name__}")
    except ConnectionClosed as exc:
        recorder.error(f"disconnected:{exc.reason.code if exc.reason else 'unknown'}")
    except trio.TooSlowError:
        recorder.error("connect_timeout")
    finally:
        recorder.add_checker(checker)
    return done if completed else None


async def run_session_slot(
    url: str, plan: Plan, recorder: Recorder, *, session: int, turns: int | None, t0: float
) -> None:
    """One simulated user: ``turns`` turns (or until cancelled), in conversations of
    ``plan.conversation_turns`` turns each (a new WebSocket session each), or one conversation."""
    turn = 0
    while turns is None or turn < turns:
        count = plan.conversation_turns
        if turns is not None:
            count = turns - turn if count is None else min(count, turns - turn)
        done = await run_conversation(
            url, plan, recorder, session=session, first_turn=turn, turns=count, t0=t0
        )
        if done is None or count is None:
            return  # failed (counted), or ran until cancelled
        turn += done
