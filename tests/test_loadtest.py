"""The load-test tool: its protocol checker (sans-I/O), and whole runs against real and broken servers."""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from tests.conftest import IO_TIMEOUT, run_server
from tools.loadtest import Plan, ProtocolChecker, Question, run_level
from tools.loadtest.checks import (
    BINARY_FRAME,
    DUPLICATE_DONE,
    EVENT_AFTER_DONE,
    EVENT_WITHOUT_CREATED,
    OVERLAPPING_REPLIES,
    REPLY_NOT_DONE,
    SEQ_BACKWARDS,
    SEQ_GAP,
    UNDECODABLE,
)
from tools.loadtest.plan import speech_bounds
from tools.loadtest.realtime import DUPLICATE_EVENT_ID, RealtimeChecker
from tools.loadtest.report import percentiles
from trio_voice.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD, tone, utterance

CREATED = {"type": "session.created", "session_id": "s", "conversation_id": "c", "config": {}}


def ev(seq: int, type_: str, **fields) -> str:
    return json.dumps({"type": type_, "seq": seq, **fields})


def reply(first_seq: int, rid: str) -> list[str]:
    """A well-formed reply of four events."""
    return [
        ev(first_seq, "response.created", response_id=rid),
        ev(first_seq + 1, "response.text.delta", response_id=rid, delta="Hi."),
        ev(
            first_seq + 2,
            "response.audio.delta",
            response_id=rid,
            index=0,
            audio="AAA=",
            sample_rate=22050,
            format="pcm16",
        ),
        ev(
            first_seq + 3,
            "response.done",
            response_id=rid,
            status="completed",
            reason=None,
            text="Hi.",
            metrics={},
        ),
    ]


def check(frames: list[str | bytes], *, finish: bool = True) -> ProtocolChecker:
    checker = ProtocolChecker()
    for frame in frames:
        checker.receive(frame)
    if finish:
        checker.finish()
    return checker


# --- the checker, sans-I/O ---------------------------------------------------------------------------


def test_checker_accepts_a_well_formed_session() -> None:
    """Two replies with seq 1..9 and nothing after their done: no violation."""
    checker = check([ev(1, "session.created", **CREATED), *reply(2, "r1"), *reply(6, "r2")])
    assert checker.violations == 0 and checker.events == 9


def test_checker_counts_a_seq_gap_once() -> None:
    """A lost event is one seq_gap; later events resynchronise instead of counting again."""
    checker = check([ev(1, "pong"), ev(3, "pong"), ev(4, "pong")])
    assert dict(checker.counts) == {SEQ_GAP: 1}


def test_checker_catches_seq_going_backwards() -> None:
    """A repeated seq is seq_backwards."""
    assert dict(check([ev(1, "pong"), ev(2, "pong"), ev(2, "pong")]).counts) == {SEQ_BACKWARDS: 1}


def test_checker_catches_an_event_after_done() -> None:
    """A text delta of a reply after its response.done is event_after_done."""
    frames = [*reply(1, "r1"), ev(5, "response.text.delta", response_id="r1", delta="stale")]
    assert dict(check(frames).counts) == {EVENT_AFTER_DONE: 1}


def test_checker_catches_an_error_about_a_finished_reply() -> None:
    """An error naming a reply after its response.done also counts as event_after_done."""
    frames = [*reply(1, "r1"), ev(5, "error", code="tts_failed", message="x", response_id="r1")]
    assert dict(check(frames).counts) == {EVENT_AFTER_DONE: 1}


def test_checker_catches_a_second_done() -> None:
    """Two response.done for one reply is duplicate_done."""
    frames = [
        *reply(1, "r1"),
        ev(5, "response.done", response_id="r1", status="completed", reason=None, text="", metrics={}),
    ]
    assert dict(check(frames).counts) == {DUPLICATE_DONE: 1}


def test_checker_catches_events_before_created() -> None:
    """A reply event whose response.created never came is event_without_created."""
    assert dict(check([ev(1, "response.text.delta", response_id="r9", delta="x")]).counts) == {
        EVENT_WITHOUT_CREATED: 1
    }


def test_checker_catches_overlapping_replies() -> None:
    """A second response.created while the first reply is open is overlapping_replies."""
    frames = [ev(1, "response.created", response_id="r1"), *reply(2, "r2")]
    assert check(frames, finish=False).counts == {OVERLAPPING_REPLIES: 1}


def test_checker_catches_a_reply_never_done_at_a_normal_end() -> None:
    """finish() reports a reply left open, but only when called."""
    frames = [ev(1, "response.created", response_id="r1")]
    assert check(frames, finish=False).violations == 0
    assert dict(check(frames).counts) == {REPLY_NOT_DONE: 1}


def test_checker_counts_undecodable_and_binary_frames() -> None:
    """Bad JSON, an unknown type, a missing field and a binary frame each count; decoding goes on."""
    frames: list[str | bytes] = [
        "{nope",
        ev(1, "no.such.event"),
        json.dumps({"type": "pong"}),
        b"\x00\x01",
        ev(1, "pong"),
    ]
    checker = check(frames)
    assert dict(checker.counts) == {UNDECODABLE: 3, BINARY_FRAME: 1} and checker.events == 1


# --- pure helpers --------------------------------------------------------------------------------------


def test_percentiles_of_known_values() -> None:
    """p50/p95/p99 interpolate linearly; None values are ignored; an empty list gives n=0."""
    stats = percentiles([*[float(v) for v in range(1, 101)], None])  # type: ignore[list-item]
    assert (stats["n"], stats["p50"], stats["p99"], stats["max"]) == (100, 50.5, 99.0, 100.0)
    assert abs(stats["p95"] - 95.05) <= 0.06
    assert percentiles([])["n"] == 0


def test_speech_bounds_find_the_loud_part() -> None:
    """The first and last loud 20 ms windows of silence + tone + silence bound the tone."""
    pcm = utterance(1.0, lead_silence_s=0.2, tail_silence_s=0.8)
    start, end = speech_bounds(pcm)
    assert (start, end) == (int(0.2 * 32000), int(1.2 * 32000))


def test_interruptions_are_exactly_the_share_asked() -> None:
    """interrupt_share 0.25 interrupts exactly a quarter of any 20 consecutive turns."""
    plan = Plan(questions=[Question.typed("hi")], interrupt_share=0.25)
    assert sum(plan.interrupts(3, turn) for turn in range(20)) == 5


# --- whole runs against a real server with fake engines ---------------------------------------------------


async def test_text_run_reports_sane_latencies(tmp_path) -> None:
    """Typed questions from 3 sessions: every turn completes with first text before first audio, no violation."""
    plan = Plan(questions=[Question.typed("What is up?"), Question.typed("Why?")], think_time=0.05)
    async with run_server(tmp_path) as server:
        with trio.fail_after(IO_TIMEOUT):
            rec = await run_level(server.ws_url, plan, sessions=3, ramp=50, turns=3, progress=None)
    report = rec.level_report()
    assert report["turns"] == 9 and report["statuses"] == {"completed": 9}
    assert report["error_count"] == 0 and report["violation_count"] == 0 and report["events"] > 9 * 4
    for s in rec.samples:
        assert 0 <= s.first_text_ms <= s.first_audio_ms < 5000
        assert s.reply_chars > 10 and s.reply_audio_s > 0.5 and s.server["tokens"] > 0
    assert report["summary"]["first_audio_ms"]["n"] == 9 and report["client_cpu_percent"] >= 0


async def test_voice_run_measures_voice_to_voice(tmp_path) -> None:
    """A spoken question streamed in real time gets a reply; voice-to-voice covers the VAD's silence."""
    engines = {"stt": FakeSTT(), "vad_factory": FakeVAD}
    plan = Plan(
        questions=[Question.spoken("tone", tone(0.4, 16000, amplitude=0.3))],
        think_time=0.05,
        tail_silence_s=0.7,
    )
    async with run_server(tmp_path, engines) as server:
        with trio.fail_after(IO_TIMEOUT):
            rec = await run_level(server.ws_url, plan, sessions=2, ramp=50, turns=1, progress=None)
    assert [s.status for s in rec.samples] == ["completed", "completed"]
    for s in rec.samples:
        assert s.kind == "voice" and s.transcript.startswith("I spoke for")
        # The server waits vad_silence_ms (500) of silence before it ends the turn.
        assert 450 <= s.voice_to_voice_ms < 5000
        assert s.server["vad_hangover_ms"] is not None and s.server["voice_to_voice_ms"] is not None
    assert rec.violations == {} and rec.errors == {}


async def test_cancel_interruption_is_timed(tmp_path) -> None:
    """Every reply cancelled after its first audio ends cancelled/client_cancelled with an interruption time."""
    engines = {"llm": FakeLLM(token_delay=0.02), "tts": FakeTTS(delay=lambda text: 0.1)}
    plan = Plan(questions=[Question.typed("Tell me a story.")], think_time=0.05, interrupt_share=1.0)
    async with run_server(tmp_path, engines) as server:
        with trio.fail_after(IO_TIMEOUT):
            rec = await run_level(server.ws_url, plan, sessions=1, ramp=50, turns=2, progress=None)
    for s in rec.samples:
        assert (s.status, s.reason, s.interrupt) == ("cancelled", "client_cancelled", "cancel")
        assert 0 <= s.interruption_ms < 2000
    assert rec.violations == {}


# --- broken servers: the checker catches them in a real run ----------------------------------------------


async def _broken_server(frames_for_turn, request: WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message(ev(1, "session.created", **CREATED))
    seq = 2
    while True:
        try:
            message = json.loads(await ws.get_message())
        except ConnectionClosed:
            return  # the client hung up: the end of the test run
        rid = f"r{seq}"
        for frame in frames_for_turn(seq, rid, message.get("request_id")):
            await ws.send_message(frame)
        seq += 5


def _stale_delta(seq: int, rid: str, request_id: str) -> list[str]:
    frames = [json.dumps(json.loads(f) | {"request_id": request_id}) for f in reply(seq, rid)]
    return [*frames, ev(seq + 4, "response.text.delta", response_id=rid, delta="stale")]


def _skipped_seq(seq: int, rid: str, request_id: str) -> list[str]:
    frames = [json.dumps(json.loads(f) | {"request_id": request_id}) for f in reply(seq + 1, rid)]
    return frames  # seq jumps by one at every reply's start


async def _run_against(frames_for_turn) -> object:
    plan = Plan(questions=[Question.typed("hi")], think_time=0.0)
    async with trio.open_nursery() as nursery:
        handler = partial(_broken_server, frames_for_turn)
        listeners = await nursery.start(partial(serve_websocket, handler, "127.0.0.1", 0, ssl_context=None))
        url = f"ws://127.0.0.1:{listeners.port}/v1/voice"
        with trio.fail_after(IO_TIMEOUT):
            rec = await run_level(url, plan, sessions=1, ramp=50, turns=3, progress=None)
        nursery.cancel_scope.cancel()
    return rec


async def test_run_reports_events_after_done() -> None:
    """A server that sends a text delta after response.done is reported with event_after_done."""
    rec = await _run_against(_stale_delta)
    # The stale delta of the last turn may arrive after the client hung up; the earlier ones cannot.
    assert rec.violations[EVENT_AFTER_DONE] >= 2 and set(rec.violations) == {EVENT_AFTER_DONE}
    assert rec.level_report()["violation_examples"][0]["kind"] == EVENT_AFTER_DONE


async def test_run_reports_a_skipped_seq() -> None:
    """A server that skips a seq number is reported with seq_gap."""
    rec = await _run_against(_skipped_seq)
    assert rec.violations == {SEQ_GAP: 3}


# --- --protocol realtime: the same script over /v1/realtime ------------------------------------------------


def rt(type_: str, event_id: str, **fields) -> str:
    return json.dumps({"type": type_, "event_id": event_id, **fields})


def rt_response(rid: str, status: str = "in_progress", **extra) -> dict:
    return {"object": "realtime.response", "id": rid, "status": status, "output": [], **extra}


def test_realtime_checker_translates_a_response_for_the_script() -> None:
    """A realtime response reads as the native shape: its request id from metadata, audio at 24 kHz,
    status and reason from response.done."""
    checker = RealtimeChecker()
    created = checker.receive(
        rt("response.created", "e1", response=rt_response("r1", metadata={"request_id": "q0"}))
    )
    audio = checker.receive(rt("response.output_audio.delta", "e2", response_id="r1", delta="AAA="))
    details = {"type": "cancelled", "reason": "turn_detected", "error": None}
    done = checker.receive(
        rt("response.done", "e3", response=rt_response("r1", "cancelled", status_details=details))
    )
    checker.finish()
    assert created == {"type": "response.created", "response_id": "r1", "request_id": "q0"}
    assert audio == {
        "type": "response.audio.delta",
        "response_id": "r1",
        "audio": "AAA=",
        "sample_rate": 24000,
    }
    assert (done["status"], done["reason"]) == ("cancelled", "turn_detected")
    assert checker.violations == 0 and checker.events == 3


def test_realtime_checker_catches_reused_ids_late_events_and_overlaps() -> None:
    """A reused event_id, an event after response.done, a second response while one runs, a response
    never done, and a frame with no event_id are each counted."""
    checker = RealtimeChecker()
    for frame in (
        rt("response.created", "e1", response=rt_response("r1")),
        rt("response.done", "e2", response=rt_response("r1", "completed")),
        rt("response.output_text.delta", "e2", response_id="r1", delta="late"),
        rt("response.created", "e4", response=rt_response("r2")),
        rt("response.created", "e5", response=rt_response("r3")),
        json.dumps({"type": "session.updated"}),
    ):
        checker.receive(frame)
    checker.finish()
    assert checker.counts == {
        DUPLICATE_EVENT_ID: 1,
        EVENT_AFTER_DONE: 1,
        OVERLAPPING_REPLIES: 1,
        REPLY_NOT_DONE: 2,
        UNDECODABLE: 1,
    }


async def test_realtime_text_and_voice_runs_measure_the_same_things(tmp_path) -> None:
    """--protocol realtime: typed turns complete with first text before first audio; a spoken turn
    (24 kHz appends) is transcribed and answered with a voice-to-voice time; no violation."""
    engines = {"stt": FakeSTT(), "vad_factory": FakeVAD}
    typed = Plan(questions=[Question.typed("What is up?")], think_time=0.05, protocol="realtime")
    spoken = Plan(
        questions=[Question.spoken("tone", tone(0.4, 16000, amplitude=0.3))],
        think_time=0.05,
        tail_silence_s=0.7,
        protocol="realtime",
    )
    async with run_server(tmp_path, engines) as server:
        url = server.listening.realtime_url + "?model=trio-voice"
        with trio.fail_after(IO_TIMEOUT):
            text = await run_level(url, typed, sessions=2, ramp=50, turns=2, progress=None)
            voice = await run_level(url, spoken, sessions=1, ramp=50, turns=1, progress=None)
    assert [s.status for s in text.samples] == ["completed"] * 4
    for s in text.samples:
        assert 0 <= s.first_text_ms <= s.first_audio_ms < 5000 and s.reply_audio_s > 0.5
    [s] = voice.samples
    assert s.status == "completed" and s.transcript.startswith("I spoke for")
    assert 450 <= s.voice_to_voice_ms < 5000
    assert text.violations == voice.violations == {} and text.errors == voice.errors == {}
    assert text.events > 4 * 8


async def test_realtime_cancel_interruption_is_timed(tmp_path) -> None:
    """--protocol realtime with response.cancel: cancelled/client_cancelled, with an interruption time."""
    engines = {"llm": FakeLLM(token_delay=0.02), "tts": FakeTTS(delay=lambda text: 0.1)}
    plan = Plan(
        questions=[Question.typed("Tell me a story.")],
        think_time=0.05,
        interrupt_share=1.0,
        protocol="realtime",
    )
    async with run_server(tmp_path, engines) as server:
        with trio.fail_after(IO_TIMEOUT):
            rec = await run_level(
                server.listening.realtime_url, plan, sessions=1, ramp=50, turns=2, progress=None
            )
    for s in rec.samples:
        assert (s.status, s.reason, s.interrupt) == ("cancelled", "client_cancelled", "cancel")
        assert 0 <= s.interruption_ms < 2000
    assert rec.violations == {}


def test_a_realtime_plan_refuses_what_only_v1_voice_has() -> None:
    """Dropping and resuming connections, and a turn detection to send, are /v1/voice's: the realtime
    API has no resume and keeps server_vad, so a realtime plan with either is refused up front."""
    from trio_voice import codec

    with pytest.raises(ValueError, match="drop_rate"):
        Plan(questions=[Question.typed("hi")], drop_rate=0.5, protocol="realtime")
    with pytest.raises(ValueError, match="turn_detection"):
        Plan(questions=[Question.typed("hi")], turn_detection=codec.TurnDetection(), protocol="realtime")


def test_drops_are_exactly_the_rate_asked() -> None:
    """drop_rate 0.5 drops exactly half of any 20 consecutive turns."""
    plan = Plan(questions=[Question.typed("hi")], drop_rate=0.5)
    assert sum(plan.drops(2, turn) for turn in range(20)) == 10


def test_checker_counts_lost_and_repeated_events_one_by_one() -> None:
    """A gap of three seqs is three events lost; each repeated seq is one duplicate."""
    checker = check([ev(1, "pong"), ev(5, "pong"), ev(5, "pong"), ev(4, "pong"), ev(6, "pong")])
    assert (checker.lost_events, checker.duplicate_events) == (3, 2)


async def test_dropped_connections_resume_and_lose_nothing(tmp_path) -> None:
    """Half the turns drop their connection mid-reply (no close frame) and resume: every turn completes,
    every drop is resumed, and no event is lost or repeated."""
    engines = {"llm": FakeLLM(token_delay=0.01), "tts": FakeTTS(delay=lambda text: 0.02)}
    plan = Plan(questions=[Question.typed("Tell me something.")], think_time=0.05, drop_rate=0.5)
    async with run_server(tmp_path, engines) as server:
        with trio.fail_after(IO_TIMEOUT * 2):
            rec = await run_level(server.ws_url, plan, sessions=3, ramp=50, turns=4, progress=None)
    report = rec.level_report()
    assert report["statuses"] == {"completed": 12}
    assert report["drops"] == 6 and report["resumes"] == 6
    assert (report["events_lost"], report["events_duplicated"]) == (0, 0)
    assert report["violation_count"] == 0 and report["errors"] == {}
