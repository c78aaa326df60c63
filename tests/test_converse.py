"""Stage tests of turn ownership under autojump_clock: converse_task and TurnControl with scripted fakes.

converse_task runs with fake engines, an in-memory store and an emit that records each event with the
time and the request it answers, so the times and orders below are what the code decides.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import attrs
import pytest
import trio
import trio.testing

from trio_voice.codec.codes import CancelReason, ReplyStatus
from trio_voice.config import Config
from trio_voice.converse import converse_task
from trio_voice.engines import Engines
from trio_voice.events import ErrorEvent, ReplyCreated, ReplyDone, TextDelta
from trio_voice.session_state import SessionState
from trio_voice.telemetry import Telemetry
from trio_voice.testing import FakeLLM, FakeStore, FakeTTS
from trio_voice.turn_control import PendingTurn, TurnKind

CONFIG = Config(data_dir="/nonexistent")


def long_reply(_messages: object) -> str:
    """A hundred different words (a reply that repeated itself would be cut by the repetition guard)."""
    return " ".join(f"word{n}" for n in range(100))


@attrs.define
class Harness:
    state: SessionState
    llm: FakeLLM
    tts: FakeTTS
    store: FakeStore
    events: list[tuple[float, str | None, object]] = attrs.field(factory=list)

    def emit_for(self, request_id: str | None):  # type: ignore[no-untyped-def]
        async def emit(event: object) -> None:
            await trio.lowlevel.checkpoint()
            self.events.append((trio.current_time(), request_id, event))

        return emit

    def of(self, kind: type) -> list:
        return [e for _, _, e in self.events if isinstance(e, kind)]

    def done_by_request(self) -> dict[str | None, list[ReplyDone]]:
        found: dict[str | None, list[ReplyDone]] = {}
        for _, rid, event in self.events:
            if isinstance(event, ReplyDone):
                found.setdefault(rid, []).append(event)
        return found


def chat(text: str, request_id: str | None = None, *, spoken: bool = False) -> PendingTurn:
    return PendingTurn(TurnKind.CHAT, text, request_id or text, trio.current_time(), spoken=spoken)


async def start(
    nursery: trio.Nursery, *, llm: FakeLLM | None = None, store: FakeStore | None = None
) -> Harness:
    store = store or FakeStore()
    conversation_id = await store.create_conversation()
    h = Harness(SessionState("sess_test", conversation_id, "sys"), llm or FakeLLM(), FakeTTS(), store)
    engines = Engines(llm=h.llm, tts=h.tts, store=store)
    nursery.start_soon(
        partial(
            converse_task,
            h.state.turns,
            emit_for=h.emit_for,
            engines=engines,
            config=CONFIG,
            telemetry=Telemetry(),
            state=h.state,
        )
    )
    await trio.testing.wait_all_tasks_blocked()
    return h


async def test_requests_arriving_together_are_each_closed_and_the_newest_runs(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Three requests at once: the first two get response.created and response.done (cancelled,
    new_message) without running; the third runs to completion; each gets exactly one response.done,
    and all three user messages are in the conversation, in order."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        for text in ("one", "two", "three"):
            h.state.turns.request(chat(text))
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    dones = h.done_by_request()
    assert {rid: [(d.status, d.reason) for d in ds] for rid, ds in dones.items()} == {
        "one": [(ReplyStatus.CANCELLED, CancelReason.NEW_MESSAGE)],
        "two": [(ReplyStatus.CANCELLED, CancelReason.NEW_MESSAGE)],
        "three": [(ReplyStatus.COMPLETED, None)],
    }
    assert len(h.llm.calls) == 1
    users = [m.text for m in h.store.conversations[h.state.conversation_id] if m.role == "user"]
    assert users == ["one", "two", "three"]
    assert [m["content"] for m in h.llm.calls[0] if m["role"] == "user"] == ["one", "two", "three"]


async def test_a_request_mid_reply_wins_at_once_and_the_requester_never_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Requests during a reply return without a checkpoint; the running reply is cancelled at once, the one
    request that was superseded before it started is closed, and the newest runs once the store write of
    the cancelled reply (slow here: 2 s) has landed."""
    llm = FakeLLM(token_delay=0.1, reply=long_reply)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, llm=llm)
        h.state.turns.request(chat("first"))
        await trio.sleep(1.0)
        h.store.delay = 2.0
        before = trio.current_time()
        h.state.turns.request(chat("second"))
        h.state.turns.request(chat("third"))
        assert trio.current_time() == before  # synchronous: nothing waited
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    first_done = h.done_by_request()["first"][0]
    assert (first_done.status, first_done.reason) == (ReplyStatus.CANCELLED, CancelReason.NEW_MESSAGE)
    assert h.done_by_request()["second"][0].reason == CancelReason.NEW_MESSAGE
    assert h.done_by_request()["third"][0].status == ReplyStatus.COMPLETED
    done_at = next(t for t, rid, e in h.events if rid == "first" and isinstance(e, ReplyDone))
    assert done_at == pytest.approx(before, abs=0.11)  # cancelled within a token
    assert llm.active == 0 and h.tts.active == 0


async def test_nothing_of_a_cancelled_reply_follows_its_done(autojump_clock: trio.abc.Clock) -> None:
    """After a reply's response.done, no event of it is emitted, and each request's events are closed by it."""
    llm = FakeLLM(token_delay=0.05, reply=lambda m: " ".join(f"Sentence {n} is here." for n in range(20)))
    async with trio.open_nursery() as nursery:
        h = await start(nursery, llm=llm)
        for n in range(5):
            h.state.turns.request(chat(f"q{n}"))
            await trio.sleep(0.3)
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    closed: set[str] = set()
    for _, _, event in h.events:
        response_id = getattr(event, "response_id", None)
        assert response_id not in closed, f"{event!r} after its response.done"
        if isinstance(event, ReplyDone):
            closed.add(event.response_id)
    assert Counter(type(e) for _, _, e in h.events)[ReplyCreated] == 5 == len(closed)


async def test_storage_failure_fails_the_reply_and_the_next_one_works(autojump_clock: trio.abc.Clock) -> None:
    """A store that fails while a turn builds its context fails that reply (error with its response_id,
    then response.done failed/storage_error); once the store recovers, the next reply completes."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        h.store.failing = True
        h.state.turns.request(chat("lost"))
        await h.state.turns.wait_idle()
        h.store.failing = False
        h.state.turns.request(chat("kept"))
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    [error] = h.of(ErrorEvent)
    failed = h.done_by_request()["lost"][0]
    assert (failed.status, failed.reason) == (ReplyStatus.FAILED, "storage_error")
    assert error.code == "storage_error" and error.response_id == failed.response_id
    assert h.done_by_request()["kept"][0].status == ReplyStatus.COMPLETED


async def test_barge_in_cancels_the_reply_and_holds_a_request_until_the_user_is_done(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Speech start cancels the running reply (turn_detected, with its start time); a typed request while
    the user speaks waits, and starts only when the speech has ended."""
    llm = FakeLLM(token_delay=0.1, reply=long_reply)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, llm=llm)
        h.state.turns.request(chat("first"))
        await trio.sleep(1.0)
        h.state.turns.speech_started(at=trio.current_time() - 0.064)
        h.state.turns.request(chat("typed"))
        await trio.sleep(2.0)
        assert "typed" not in h.done_by_request() and h.state.turns.current is None
        assert not any(rid == "typed" for _, rid, _ in h.events)
        stopped = trio.current_time()
        h.state.turns.speech_stopped()
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    first = h.done_by_request()["first"][0]
    assert (first.status, first.reason) == (ReplyStatus.CANCELLED, CancelReason.TURN_DETECTED)
    assert first.metrics["interruption_ms"] == pytest.approx(64, abs=101)
    created_at = next(t for t, rid, e in h.events if rid == "typed" and isinstance(e, ReplyCreated))
    assert created_at >= stopped
    assert h.done_by_request()["typed"][0].status == ReplyStatus.COMPLETED


async def test_a_final_that_arrives_after_the_next_utterance_began_is_merged_with_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Utterance 1's final arrives while the user already speaks utterance 2: it is held, then merged with
    utterance 2's final into one turn; nothing is answered over the user."""
    turns = None
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        turns = h.state.turns
        turns.transcription_started()  # utterance 1 ended
        turns.speech_stopped()
        turns.speech_started(at=trio.current_time())  # utterance 2 begins
        turns.transcription_done(chat("What is", "u1", spoken=True))  # utterance 1's final, late
        await trio.sleep(1.0)
        assert h.events == []  # held: the user is speaking
        turns.transcription_started()  # utterance 2 ended
        turns.speech_stopped()
        await trio.sleep(1.0)
        assert h.events == []  # held: utterance 2's final is on its way
        turns.transcription_done(chat("the capital of France?", "u2", spoken=True))
        await turns.wait_idle()
        nursery.cancel_scope.cancel()
    assert list(h.done_by_request()) == ["u2"]
    assert h.llm.calls[0][-1] == {"role": "user", "content": "What is the capital of France?"}


async def test_a_final_with_no_words_releases_a_held_request(autojump_clock: trio.abc.Clock) -> None:
    """A request held for a final transcript starts as soon as that final turns out to hold no words."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        turns = h.state.turns
        turns.transcription_started()
        turns.speech_stopped()
        turns.request(chat("typed"))
        await trio.sleep(1.0)
        assert h.events == []
        turns.transcription_done(None)
        await turns.wait_idle()
        nursery.cancel_scope.cancel()
    assert h.done_by_request()["typed"][0].status == ReplyStatus.COMPLETED


async def test_cancel_names_the_running_reply_or_nothing(autojump_clock: trio.abc.Clock) -> None:
    """cancel() stops the running reply (or only the named one) and says whether it found it."""
    llm = FakeLLM(token_delay=0.1, reply=long_reply)
    async with trio.open_nursery() as nursery:
        h = await start(nursery, llm=llm)
        assert not h.state.turns.cancel(CancelReason.CLIENT_CANCELLED)
        h.state.turns.request(chat("q"))
        await trio.sleep(0.5)
        assert not h.state.turns.cancel(CancelReason.CLIENT_CANCELLED, "resp_other")
        assert h.state.turns.cancel(CancelReason.CLIENT_CANCELLED)
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    done = h.done_by_request()["q"][0]
    assert (done.status, done.reason) == (ReplyStatus.CANCELLED, CancelReason.CLIENT_CANCELLED)
    assert sum(isinstance(e, TextDelta) for e in h.of(TextDelta)) >= 1


# --- what the realtime API needs of the core: replies over the history, per-reply settings, cancels ---


async def test_a_respond_request_answers_the_stored_history_and_stores_only_the_reply(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A respond request stores no user message: the LLM sees the history as it stands, under the
    request's own instructions, and the reply is stored under the item id its ReplyCreated announced."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        conversation = h.state.conversation_id
        await h.store.add_message(conversation, "user", "typed earlier", item_id="item_u1")
        h.state.turns.request(
            PendingTurn(TurnKind.RESPOND, "", "r1", trio.current_time(), instructions="Answer in French.")
        )
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    assert h.llm.calls == [
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "typed earlier"}]
    ]
    [created] = h.of(ReplyCreated)
    stored = h.store.conversations[conversation]
    assert [(m.role, m.item_id) for m in stored] == [("user", "item_u1"), ("assistant", created.item_id)]
    assert created.item_id is not None and created.item_id.startswith("item_")
    assert h.done_by_request()["r1"][0].status == ReplyStatus.COMPLETED


async def test_a_request_may_ask_for_a_text_only_reply(autojump_clock: trio.abc.Clock) -> None:
    """output_audio=False on the request: text and phrases, no audio, while the session keeps audio on."""
    from trio_voice.events import AudioReady, PhraseReady

    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        h.state.turns.request(PendingTurn(TurnKind.RESPOND, "", "t", trio.current_time(), output_audio=False))
        await h.state.turns.wait_idle()
        h.state.turns.request(chat("and now aloud", "a"))
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    by_request: dict[str | None, list[type]] = {}
    for _, rid, event in h.events:
        by_request.setdefault(rid, []).append(type(event))
    assert PhraseReady in by_request["t"] and AudioReady not in by_request["t"]
    assert AudioReady in by_request["a"] and h.state.output_audio


async def test_a_spoken_request_stores_the_users_words_under_its_item_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A chat request naming an item id stores the user's message under it."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        h.state.turns.request(attrs.evolve(chat("hello", "s1", spoken=True), item_id="item_spoken"))
        await h.state.turns.wait_idle()
        nursery.cancel_scope.cancel()
    [user, _] = h.store.conversations[h.state.conversation_id]
    assert (user.role, user.text, user.item_id) == ("user", "hello", "item_spoken")


async def test_a_cancel_with_nothing_running_cancels_the_waiting_request(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A request held while the user speaks is cancelled by cancel(): it gets response.created and one
    response.done with the cancel's reason, and never reaches the LLM; a cancel naming an id does not."""
    async with trio.open_nursery() as nursery:
        h = await start(nursery)
        turns = h.state.turns
        turns.speech_started(at=trio.current_time())
        turns.request(PendingTurn(TurnKind.RESPOND, "", "held", trio.current_time()))
        assert not turns.cancel(CancelReason.CLIENT_CANCELLED, "resp_named")
        assert turns.cancel(CancelReason.CLIENT_CANCELLED)
        await turns.wait_idle()
        assert not turns.cancel(CancelReason.CLIENT_CANCELLED)  # nothing left to cancel
        nursery.cancel_scope.cancel()
    [done] = h.done_by_request()["held"]
    assert (done.status, done.reason) == (ReplyStatus.CANCELLED, CancelReason.CLIENT_CANCELLED)
    assert h.llm.calls == []


async def test_speech_without_interruption_holds_requests_but_lets_the_reply_finish(
    autojump_clock: trio.abc.Clock,
) -> None:
    """speech_started(interrupt=False): the running reply completes; a new request still waits for the user."""
    llm = FakeLLM(token_delay=0.1, reply=lambda _m: "one two three four five six")
    async with trio.open_nursery() as nursery:
        h = await start(nursery, llm=llm)
        turns = h.state.turns
        turns.request(chat("first"))
        await trio.sleep(0.15)
        turns.speech_started(at=trio.current_time(), interrupt=False)
        await trio.sleep(5.0)
        turns.request(PendingTurn(TurnKind.RESPOND, "", "next", trio.current_time()))
        await trio.sleep(5.0)
        assert "next" not in h.done_by_request()
        turns.speech_stopped()
        await turns.wait_idle()
        nursery.cancel_scope.cancel()
    assert h.done_by_request()["first"][0].status == ReplyStatus.COMPLETED
    assert h.done_by_request()["next"][0].status == ReplyStatus.COMPLETED
