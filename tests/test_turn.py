"""Stage tests of one turn (LLM → phrases → parallel TTS → ordered audio) under Trio's autojump clock."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from trio_voice.config import Config
from trio_voice.errors import LLMError
from trio_voice.events import AudioReady, PhraseReady, TextDelta, WarningEvent
from trio_voice.testing import FakeLLM, FakeTTS, split_tokens
from trio_voice.turn import TurnRecord, TurnRequest, run_turn

CONFIG = Config(data_dir="/nonexistent")


@attrs.define
class Collector:
    """The session's writer, reduced to a list: records each event with the time it was taken."""

    events: list[tuple[float, object]] = attrs.field(factory=list)
    closed: bool = False

    async def emit(self, event: object) -> None:
        await trio.lowlevel.checkpoint()
        assert not self.closed, f"event after the turn ended: {event!r}"
        self.events.append((trio.current_time(), event))

    def of(self, kind: type) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]


def turn_tasks() -> list[str]:
    """Names of the tasks still alive that run code of trio_voice.turn."""
    found, stack = [], [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if "trio_voice.turn" in task.name or "tts_worker" in task.name or "sequencer" in task.name:
            found.append(task.name)
        stack.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


def chat(text: str = "hi", *, output_audio: bool = True) -> TurnRequest:
    return TurnRequest(
        response_id="resp_1",
        kind="chat",
        text=text,
        messages=[{"role": "user", "content": text}],
        started_at=trio.current_time(),
        output_audio=output_audio,
    )


async def run(
    request: TurnRequest, llm: FakeLLM, tts: FakeTTS, config: Config = CONFIG
) -> tuple[Collector, TurnRecord]:
    out = Collector()
    record = TurnRecord(started_at=request.started_at)
    await run_turn(request, out.emit, llm=llm, tts=tts, config=config, record=record)
    out.closed = True
    return out, record


def three_sentences(_messages: object) -> str:
    return "The first sentence is long enough. Short one. The end."


async def test_reply_events_come_in_protocol_order(autojump_clock: trio.abc.Clock) -> None:
    """A reply streams text, and each phrase's audio follows its phrase event (response.created and
    response.done are the caller's: see test_converse.py)."""
    out, record = await run(chat(), FakeLLM(reply=three_sentences), FakeTTS())
    kinds = [type(e) for _, e in out.events]
    assert kinds[0] is TextDelta
    assert "".join(e.delta for e in out.of(TextDelta)) == three_sentences(None)
    phrases = out.of(PhraseReady)
    assert [p.index for p in phrases] == [0, 1, 2]
    assert " ".join(p.text for p in phrases) == three_sentences(None)
    speech = [(type(e).__name__, e.index) for _, e in out.events if isinstance(e, PhraseReady | AudioReady)]
    speech = [
        item for i, item in enumerate(speech) if i == 0 or item != speech[i - 1]
    ]  # one phrase, several chunks
    assert speech == [
        ("PhraseReady", 0),
        ("AudioReady", 0),
        ("PhraseReady", 1),
        ("AudioReady", 1),
        ("PhraseReady", 2),
        ("AudioReady", 2),
    ]
    assert record.text == three_sentences(None)


async def test_sequencer_keeps_order_when_later_phrases_finish_first(autojump_clock: trio.abc.Clock) -> None:
    """Phrase 0 takes longest to synthesize, yet its audio is sent before that of phrases 1 and 2."""
    delays = {"The first sentence is long enough.": 3.0, "Short one.": 0.5, "The end.": 0.1}
    tts = FakeTTS(delay=lambda text: delays[text])
    out, _ = await run(chat(), FakeLLM(reply=three_sentences), tts)
    audio = out.of(AudioReady)
    assert [a.index for a in audio] == sorted(a.index for a in audio)
    assert {a.index for a in audio} == {0, 1, 2}
    # All three were synthesized at once: the reply ends after the slowest phrase, not the sum.
    assert out.events[-1][0] == pytest.approx(3.0)


async def test_tts_workers_bound_how_many_phrases_synthesize_at_once(autojump_clock: trio.abc.Clock) -> None:
    """With one worker, phrase syntheses run one after another."""
    tts = FakeTTS(delay=lambda text: 1.0)
    out, _ = await run(chat(), FakeLLM(reply=three_sentences), tts, attrs.evolve(CONFIG, tts_workers=1))
    assert out.events[-1][0] == pytest.approx(3.0)
    start = trio.current_time()
    out3, _ = await run(chat(), FakeLLM(reply=three_sentences), FakeTTS(delay=lambda text: 1.0))
    assert out3.events[-1][0] - start == pytest.approx(1.0)


async def test_metrics_mark_each_stage_from_the_request(autojump_clock: trio.abc.Clock) -> None:
    """First token, first phrase and first audio are measured from the request's arrival."""
    llm = FakeLLM(reply=three_sentences, first_token_delay=0.25, token_delay=0.01)
    tts = FakeTTS(delay=lambda text: 0.2)
    _, record = await run(chat(), llm, tts)
    metrics = record.metrics()
    assert metrics["llm_first_token_ms"] == pytest.approx(250.0)
    assert 250.0 < metrics["first_phrase_ms"] < 400.0
    assert metrics["first_audio_ms"] == pytest.approx(metrics["first_phrase_ms"] + 200.0, abs=1.0)
    assert metrics["tokens"] == len(split_tokens(three_sentences(None)))


async def test_cancel_mid_audio_leaves_nothing_stale_and_nothing_running(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Cancelling the turn's scope after its first audio stops every event and every engine call at once."""
    llm = FakeLLM(reply=three_sentences, token_delay=0.1)
    tts = FakeTTS(delay=lambda text: 0.5)
    out = Collector()
    request = chat()
    record = TurnRecord(started_at=request.started_at)
    running: list[str] = []

    async def emit(event: object) -> None:
        await out.emit(event)
        if isinstance(event, AudioReady):
            running.extend(turn_tasks())
            scope.cancel()

    with trio.CancelScope() as scope:
        await run_turn(request, emit, llm=llm, tts=tts, config=CONFIG, record=record)
    out.closed = True
    cancelled_at = trio.current_time()
    await trio.sleep(10)  # anything left running would now emit and trip the collector
    assert scope.cancelled_caught
    assert len(out.of(AudioReady)) == 1
    assert all(at <= cancelled_at for at, _ in out.events)
    assert llm.active == 0 and tts.active == 0
    assert "trio_voice.turn.llm_task" in running and turn_tasks() == []
    assert record.phrases == ["The first sentence is long enough."]


async def test_llm_failure_mid_stream_propagates_after_the_text_sent(autojump_clock: trio.abc.Clock) -> None:
    """A stream that breaks after three tokens raises LLMError; the record keeps only what was sent."""
    llm = FakeLLM(reply=three_sentences, fail_after_tokens=3)
    out = Collector()
    request = chat()
    record = TurnRecord(started_at=request.started_at)
    with pytest.raises(LLMError, match="stream broken"):
        await run_turn(request, out.emit, llm=llm, tts=FakeTTS(), config=CONFIG, record=record)
    assert record.text == "The first sentence"
    assert llm.active == 0


async def test_first_token_timeout_fails_the_turn_exactly_on_time(autojump_clock: trio.abc.Clock) -> None:
    """An LLM that never answers fails the turn with llm_timeout after llm_first_token_timeout seconds."""
    llm = FakeLLM(first_token_delay=1000.0)
    out = Collector()
    request = chat()
    record = TurnRecord(started_at=request.started_at)
    with pytest.raises(LLMError) as info:
        await run_turn(request, out.emit, llm=llm, tts=FakeTTS(), config=CONFIG, record=record)
    assert info.value.code == "llm_timeout"
    assert trio.current_time() == pytest.approx(CONFIG.llm_first_token_timeout)


async def test_stall_between_tokens_times_out(autojump_clock: trio.abc.Clock) -> None:
    """An LLM that stops mid-reply fails the turn llm_stall_timeout seconds after its last token."""
    llm = FakeLLM(reply=three_sentences, token_delay=60.0)
    config = attrs.evolve(CONFIG, llm_stall_timeout=2.0)
    out = Collector()
    request = chat()
    record = TurnRecord(started_at=request.started_at)
    with pytest.raises(LLMError, match="next token"):
        await run_turn(request, out.emit, llm=llm, tts=FakeTTS(), config=config, record=record)
    assert trio.current_time() == pytest.approx(2.0)


async def test_a_slow_tts_is_waited_for_not_reported_as_an_llm_stall(autojump_clock: trio.abc.Clock) -> None:
    """One TTS worker taking 15 s a phrase holds the LLM stage back for longer than the 10 s stall timeout;
    a healthy LLM (a token every 50 ms) is still not timed out: the deadline counts only the LLM's gaps."""
    sentences = " ".join(f"Sentence number {n} is here." for n in range(6))
    llm = FakeLLM(reply=lambda _m: sentences, token_delay=0.05)
    tts = FakeTTS(delay=lambda text: 15.0)
    config = attrs.evolve(CONFIG, tts_workers=1, llm_stall_timeout=10.0)
    start = trio.current_time()
    out, record = await run(chat(), llm, tts, config)
    assert record.text == sentences
    assert " ".join(p.text for p in out.of(PhraseReady)) == sentences
    assert trio.current_time() - start >= 6 * 15.0


async def test_failed_phrase_becomes_a_warning_and_the_reply_goes_on(autojump_clock: trio.abc.Clock) -> None:
    """A phrase the voice cannot say is reported in order; the phrases after it are still spoken."""
    out, _ = await run(chat(), FakeLLM(reply=three_sentences), FakeTTS(fail_on="Short"))
    [warning] = out.of(WarningEvent)
    assert warning.code == "tts_failed" and "phrase 1" in warning.message
    assert {a.index for a in out.of(AudioReady)} == {0, 2}


async def test_text_only_reply_sends_phrases_without_audio(autojump_clock: trio.abc.Clock) -> None:
    """With output_audio off, no synthesis runs and phrases still arrive."""
    tts = FakeTTS()
    out, _ = await run(chat(output_audio=False), FakeLLM(reply=three_sentences), tts)
    assert len(out.of(PhraseReady)) == 3 and out.of(AudioReady) == [] and tts.started == []


async def test_speak_turn_says_the_given_text_without_the_llm(autojump_clock: trio.abc.Clock) -> None:
    """A speak turn streams the given text as phrases and audio; the LLM is never called."""
    llm = FakeLLM()
    request = attrs.evolve(chat(), kind="speak", text="Welcome to the lesson. Let us begin.", messages=())
    out, record = await run(request, llm, FakeTTS())
    assert llm.calls == []
    assert [p.text for p in out.of(PhraseReady)] == ["Welcome to the lesson.", "Let us begin."]
    assert record.text == "Welcome to the lesson. Let us begin."


async def test_a_looping_reply_is_cut_with_a_warning(autojump_clock: trio.abc.Clock) -> None:
    """A reply that starts repeating itself stops at the loop: the words before it are spoken, a
    reply_repeating warning says why, the looping words are never sent and the LLM stream is closed."""
    loop = "la femme au pays de France, " * 20
    llm = FakeLLM(reply=lambda _m: "Bonjour. " + loop, token_delay=0.05)
    out, record = await run(chat(), llm, FakeTTS())
    warnings = out.of(WarningEvent)
    assert [w.code for w in warnings] == ["reply_repeating"]
    sent = "".join(d.delta for d in out.of(TextDelta))
    assert sent == record.text
    assert sent.lower().count("la femme au pays de france") == 2  # caught as the second one ends
    assert llm.active == 0
    assert len(sent) < 80


def test_heard_text_cuts_to_the_words_played() -> None:
    """Truncating at half of the second phrase keeps the first phrase and half of the second one's words."""
    record = TurnRecord(
        started_at=0.0, phrases=["One two three.", "Four five six seven."], phrase_audio_ms=[1000.0, 1000.0]
    )
    assert record.heard_text(1500.0) == "One two three. Four five"
    assert record.heard_text(5000.0) == "One two three. Four five six seven."
    assert record.heard_text(0.0) == ""
