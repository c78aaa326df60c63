"""Narration: phrase cutting per language, the queue's rules, and narrate over a real server with fake engines."""

from __future__ import annotations

import base64
import gc
import json
from pathlib import Path

import pytest
import trio

from tests.conftest import Client, connect, run_server
from trio_voice.narration import Narration, Narrations, read_lesson, split_phrases
from trio_voice.testing import FakeLLM, FakeTTS, utterance
from trio_voice.turn_control import TurnControl, TurnKind

from .test_voice_session import stream, voice_engines

# --- phrases, per language ---------------------------------------------------------------------------

SPLITS = {
    "en": (
        "The sea was calm. Dr. Smith paid $29.50 for it! Then the wind rose, and nobody noticed.",
        ["The sea was calm.", "Dr. Smith paid $29.50 for it!", "Then the wind rose, and nobody noticed."],
    ),
    "de": (
        "Der Hund läuft schnell. Dr. Müller ist müde! Warum schläft er nicht?",
        ["Der Hund läuft schnell.", "Dr. Müller ist müde!", "Warum schläft er nicht?"],
    ),
    "es": (
        "¿Dónde está la biblioteca? Está cerca del parque. ¡Qué bonito día!",
        ["¿Dónde está la biblioteca?", "Está cerca del parque.", "¡Qué bonito día!"],
    ),
    "fr": (
        "Le chat dort au soleil. Il fait beau aujourd'hui ! « Bonjour », dit-il.",
        ["Le chat dort au soleil.", "Il fait beau aujourd'hui!", "« Bonjour », dit-il."],
    ),
    "zh": ("今天天气很好。我们去公园吧！你想去吗？", ["今天天气很好。", "我们去公园吧！", "你想去吗？"]),
    "ja": (
        "東京は大きいです。とても静かです！行きますか？",
        ["東京は大きいです。", "とても静かです！", "行きますか？"],
    ),
}


@pytest.mark.parametrize("language", sorted(SPLITS))
def test_narration_text_is_cut_at_sentence_ends_in_each_language(language: str) -> None:
    """Each supported language's sentence punctuation (CJK full-width marks too) ends a phrase; abbreviations do not."""
    text, phrases = SPLITS[language]
    assert list(split_phrases(text)) == phrases


def test_a_long_sentence_is_cut_by_length_and_nothing_is_lost() -> None:
    """Text without punctuation is cut after max_tokens words, and every word survives, in order."""
    words = [f"w{i}" for i in range(230)]
    phrases = split_phrases(" ".join(words))
    assert len(phrases) >= 230 // 50 and " ".join(phrases).split() == words


# --- the queue and its place -------------------------------------------------------------------------


def narration(n: int = 5, **kwargs) -> Narration:
    return Narration("narr_1", tuple(f"Phrase {i}." for i in range(n)), None, "l1", **kwargs)


def test_the_place_moves_on_as_phrases_are_sent() -> None:
    """phrase_sent moves the place and the position; a finished narration is not ready."""
    story = narration(2)
    story.begin_segment(lambda: None)
    story.phrase_sent(1000.0)
    assert (story.next_index, story.position_ms, story.finished) == (1, 1000.0, False)
    story.phrase_sent(500.0)
    queue = Narrations()
    queue.add(story)
    assert story.finished and queue.ready() is None


def test_resuming_after_a_truncate_goes_back_to_the_phrase_that_was_playing() -> None:
    """The client played 1.5 phrases of 3 sent: the place goes back to the second phrase of the segment."""
    heard: list[float | None] = [None]
    story = narration(6, next_index=2, position_ms=2000.0)
    story.begin_segment(lambda: heard[0])
    for _ in range(3):
        story.phrase_sent(1000.0)
    story.rewind_to_heard()
    assert story.next_index == 5  # no report: after the last phrase sent
    heard[0] = 1500.0
    story.rewind_to_heard()
    assert (story.next_index, story.position_ms) == (3, 3000.0)


async def test_a_paused_head_holds_the_queue() -> None:
    """Narrations run in order; while the first is paused none of the others starts."""
    queue = Narrations()
    first, second = narration(), narration()
    assert (queue.add(first), queue.add(second)) == (0, 1)
    turn = queue.next_turn()
    assert turn is not None and turn.kind == TurnKind.NARRATE and turn.narration is first
    first.paused = True
    assert queue.next_turn() is None
    queue.remove(first)
    assert queue.next_turn().narration is second  # type: ignore[union-attr]


async def test_background_turns_start_only_when_nothing_else_is_to_do(autojump_clock) -> None:
    """TurnControl asks for a background turn when idle, never while the user speaks or a request waits."""
    control, queue = TurnControl(), Narrations()
    control.background = queue.next_turn
    control.speech_started(0.0)
    queue.add(narration())
    with trio.move_on_after(1.0) as waited:
        await control.wait_next()
    assert waited.cancelled_caught  # held: the user is speaking
    control.speech_stopped()
    superseded, turn = await control.wait_next()
    assert superseded == [] and turn is not None and turn.kind == TurnKind.NARRATE


def test_lessons_are_read_by_id_from_the_folder(tmp_path: Path) -> None:
    """A lesson id names ID.txt; unknown ids, path tricks and over-long lessons are refused."""
    (tmp_path / "intro.txt").write_text("Welcome. Today: plants.", encoding="utf-8")
    assert read_lesson(tmp_path, "intro", max_chars=100) == "Welcome. Today: plants."
    assert read_lesson(tmp_path, "nope", max_chars=100) is None
    assert read_lesson(tmp_path, "../intro", max_chars=100) is None
    with pytest.raises(ValueError, match="longer than"):
        read_lesson(tmp_path, "intro", max_chars=5)


# --- narrate over a server ---------------------------------------------------------------------------

STORY = " ".join(f"Sentence number {i} of the story." for i in range(12))


async def narrate(client: Client, **fields) -> dict:
    await client.send({"type": "narrate", "request_id": "l1", **fields})
    return (await client.recv_until("narration.created"))[-1]


async def test_a_narration_is_spoken_in_order_with_progress(tmp_path) -> None:
    """narrate answers narration.created; each phrase's audio is followed by its progress; it ends done."""
    async with run_server(tmp_path) as server, connect(server.ws_url) as client:
        created = await narrate(client, text=STORY)
        events = await client.recv_until("narration.done")
    assert (created["total_phrases"], created["ahead"]) == (12, 0)
    progress = [e for e in events if e["type"] == "narration.progress"]
    assert [e["phrase_index"] for e in progress] == list(range(12))
    positions = [e["position_ms"] for e in progress]
    assert positions == sorted(positions) and positions[0] > 0
    for event in progress:
        last_audio = max(
            i
            for i, e in enumerate(events)
            if e["type"] == "response.audio.delta" and e["index"] == event["phrase_index"]
        )
        assert last_audio < events.index(event)
    done = next(e for e in events if e["type"] == "response.done")
    assert done["status"] == "completed" and done["text"] == STORY
    assert events[-1] == {**events[-1], "status": "completed", "narration_id": created["narration_id"]}


async def test_narrations_queue_behind_a_reply_and_each_other(tmp_path) -> None:
    """A narration waits for the running reply (no cancel); a second one queues behind the first."""
    tts = FakeTTS(delay=lambda text: 0.05)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        await client.send({"type": "message.create", "text": "hello"})
        await client.recv_until("response.created")
        await client.send({"type": "narrate", "text": "First story. It is short."})
        await client.send({"type": "narrate", "text": "Second story."})
        events = await client.recv_until("narration.done", status="completed")
        events += await client.recv_until("narration.done", status="completed")
    dones = [e for e in events if e["type"] == "response.done"]
    assert [d["status"] for d in dones] == ["completed"] * 3
    assert [d["text"] for d in dones][1:] == ["First story. It is short.", "Second story."]
    assert [e["ahead"] for e in events if e["type"] == "narration.created"] == [0, 1]


async def test_pause_and_resume_go_on_where_it_stopped(tmp_path) -> None:
    """narration.pause ends the stretch (narration_paused) and reports the place; resume says the rest, once."""
    tts = FakeTTS(delay=lambda text: 0.02)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        await narrate(client, text=STORY)
        before = await client.recv_until("narration.progress", phrase_index=2)
        await client.send({"type": "narration.pause"})
        paused = await client.recv_until("narration.paused")
        await client.expect_quiet(0.3)
        await client.send({"type": "narration.resume"})
        after = await client.recv_until("narration.done")
    stopped = next(e for e in paused if e["type"] == "response.done")
    assert (stopped["status"], stopped["reason"]) == ("cancelled", "narration_paused")
    place = paused[-1]["phrase_index"]
    assert place >= 3 and paused[-1]["reason"] == "narration_paused"
    spoken = [e["phrase_index"] for e in before + paused if e["type"] == "narration.progress"]
    again = [e["phrase_index"] for e in after if e["type"] == "narration.progress"]
    # Nothing is said twice and nothing skipped: the stretch after the pause starts at the place. (A
    # phrase whose audio was all sent just as the pause landed moves the place without its progress.)
    assert spoken == list(range(len(spoken))) and place - len(spoken) <= 1
    assert again == list(range(place, 12))
    resumed = next(e for e in after if e["type"] == "response.done")
    assert resumed["status"] == "completed" and resumed["text"].startswith(f"Sentence number {place} ")


async def test_the_users_speech_interrupts_a_narration_and_is_answered(tmp_path) -> None:
    """Barge-in: the stretch ends turn_detected, the question gets its reply, the narration waits paused."""
    llm, tts = FakeLLM(), FakeTTS(delay=lambda text: 0.05)
    engines = {"llm": llm, "tts": tts, **voice_engines()}
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        await narrate(client, text=STORY)
        await client.recv_until("narration.progress", phrase_index=1)
        await stream(client, utterance(1.0, lead_silence_s=0.1))
        events = await client.recv_until("response.done", status="completed")
        await client.expect_quiet(0.3)  # no narration until the client asks
        await client.send({"type": "narration.resume", "request_id": "r"})
        rest = await client.recv_until("narration.done")
    interrupted = next(e for e in events if e["type"] == "response.done")
    assert (interrupted["status"], interrupted["reason"]) == ("cancelled", "turn_detected")
    paused = next(e for e in events if e["type"] == "narration.paused")
    assert paused["reason"] == "turn_detected"
    answer = events[-1]
    assert answer["text"].startswith("You said: I spoke for")
    assert (
        next(e["phrase_index"] for e in rest if e["type"] == "narration.progress") == paused["phrase_index"]
    )
    assert llm.active == 0 and tts.active == 0


async def test_cancel_drops_a_queued_narration_and_a_running_one(tmp_path) -> None:
    """narration.cancel of a queued narration answers done/cancelled at once; of the running one after its reply."""
    tts = FakeTTS(delay=lambda text: 0.05)
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        first = await narrate(client, text=STORY)
        second = await narrate(client, text="Never spoken.")
        await client.send({"type": "narration.cancel", "narration_id": second["narration_id"]})
        events = await client.recv_until("narration.done", narration_id=second["narration_id"])
        await client.send({"type": "narration.cancel"})
        events += await client.recv_until("narration.done", narration_id=first["narration_id"])
        await client.expect_quiet(0.3)
        await client.send({"type": "narration.resume"})
        refused = await client.recv_until("error")
    assert [e["status"] for e in events if e["type"] == "narration.done"] == ["cancelled", "cancelled"]
    done = next(e for e in events if e["type"] == "response.done")
    assert (done["status"], done["reason"]) == ("cancelled", "narration_paused")
    assert refused[-1]["code"] == "narration_not_found"


async def test_lessons_too_long_texts_and_full_queues_are_refused(tmp_path) -> None:
    """A stored lesson narrates; an unknown lesson, a text over the limit and a full queue get their codes."""
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "plants-1.txt").write_text("Plants need light. They make sugar.", encoding="utf-8")
    config = {"lessons_dir": lessons, "max_narration_chars": 200, "max_queued_narrations": 1}
    async with run_server(tmp_path, **config) as server, connect(server.ws_url) as client:
        await client.send({"type": "narration.pause"})
        codes = [(await client.recv_until("error"))[-1]["code"]]
        for fields in ({"lesson_id": "nope"}, {"text": "x " * 101}):
            await client.send({"type": "narrate", **fields})
            codes.append((await client.recv_until("error"))[-1]["code"])
        created = await narrate(client, lesson_id="plants-1")
        await client.send({"type": "narrate", "text": "One too many."})
        codes.append((await client.recv_until("error"))[-1]["code"])
        events = await client.recv_until("narration.done")
    assert codes == ["narration_not_found", "lesson_not_found", "text_too_long", "too_many_narrations"]
    assert created["total_phrases"] == 2
    assert (
        next(e for e in events if e["type"] == "response.done")["text"]
        == "Plants need light. They make sugar."
    )


# --- bounded memory ----------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def narrate_and_measure(client: Client, text: str) -> tuple[int, int, int]:
    """Narrate ``text``, reading every event without keeping it; (phrases, audio bytes, peak RSS growth)."""
    gc.collect()
    base = rss_bytes()
    peak = base
    await client.send({"type": "narrate", "text": text})
    audio = phrases = 0
    while True:
        with trio.fail_after(120):
            event = json.loads(await client.ws.get_message())
        if event["type"] == "response.audio.delta":
            audio += len(base64.b64decode(event["audio"]))
        elif event["type"] == "narration.progress":
            phrases += 1
            if phrases % 20 == 0:
                peak = max(peak, rss_bytes())
        elif event["type"] == "narration.done":
            return phrases, audio, max(peak, rss_bytes()) - base


async def test_a_20000_character_narration_runs_in_bounded_memory(tmp_path) -> None:
    """20,000 characters (~20 minutes of audio, ~50 MB of PCM) narrate with progress for every phrase
    while this process (server and client both) grows by far less than the audio: synthesis runs only
    a few phrases ahead and nothing keeps what was sent."""
    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    text = (sentence * (20_000 // len(sentence) + 1))[:20_000].rsplit(" ", 1)[0] + "."
    tts = FakeTTS(ms_per_char=60.0)  # ~1,200 s of 22,050 Hz PCM for 20,000 characters
    async with run_server(tmp_path, {"tts": tts}) as server, connect(server.ws_url) as client:
        await narrate_and_measure(client, "A warm-up. It fills the allocator's pools.")
        phrases, audio, growth = await narrate_and_measure(client, text)
    assert phrases == len(split_phrases(text)) > 250
    assert audio > 45 * 2**20
    assert growth < audio / 4, f"RSS grew {growth / 2**20:.1f} MiB for {audio / 2**20:.1f} MiB of audio"
