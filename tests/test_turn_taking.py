"""Turn-taking at its edges, against a real server on port 0: many requests at once, a failing store, a
flood of transcribe clips, the error at the session boundary, and partial turn_detection updates."""

from __future__ import annotations

import base64

import trio
from trio_websocket import ConnectionClosed

from tests.conftest import connect, run_server
from trio_voice.testing import FakeLLM, FakeStore, FakeSTT, FakeTTS, FakeVAD, tone


def long_reply(_messages: object) -> str:
    return " ".join(f"Sentence {n} is here." for n in range(40))


async def test_a_burst_of_requests_never_blocks_the_reader_and_the_newest_wins(tmp_path) -> None:
    """While a cancelled reply's store write is stuck, three message.create and a ping arrive: the pong
    comes at once (the reader never waits for a reply to wind down); once the store moves again, every
    request gets exactly one response.done, the superseded ones cancelled/new_message, the newest completed."""
    llm = FakeLLM(reply=long_reply, token_delay=0.02)
    tts = FakeTTS(delay=lambda text: 0.05)
    store = FakeStore()
    async with (
        run_server(tmp_path, {"llm": llm, "tts": tts, "store": store}) as server,
        connect(server.ws_url) as client,
    ):
        await client.send({"type": "message.create", "text": "zero", "request_id": "r0"})
        await client.recv_until("response.audio.delta")
        store.gate = trio.Event()  # from here on, every store call waits
        for n in (1, 2, 3):
            await client.send({"type": "message.create", "text": f"q{n}", "request_id": f"r{n}"})
        await client.send({"type": "ping", "request_id": "p"})
        with trio.fail_after(3):
            await client.recv_until("pong")
        store.gate.set()
        store.gate = None
        await client.recv_until("response.done", request_id="r3")
    dones = [e for e in client.received if e["type"] == "response.done"]
    assert [e["request_id"] for e in dones] == ["r0", "r1", "r2", "r3"]
    assert [(e["status"], e["reason"]) for e in dones] == [("cancelled", "new_message")] * 3 + [
        ("completed", None)
    ]
    assert len(llm.calls) == 2  # r0 and r3: the superseded requests never reached the LLM
    assert llm.active == 0 and tts.active == 0


async def test_a_failing_store_fails_one_reply_and_the_session_lives(tmp_path) -> None:
    """The store failing while a reply builds its context: an error with the reply's id, response.done
    failed/storage_error; session.update naming a conversation gets storage_error; then, the store back,
    the session goes on as before."""
    store = FakeStore()
    async with run_server(tmp_path, {"store": store}) as server, connect(server.ws_url) as client:
        store.failing = True
        events = await client.reply({"type": "message.create", "text": "hello", "request_id": "q1"})
        error = next(e for e in events if e["type"] == "error")
        done = events[-1]
        assert (done["status"], done["reason"]) == ("failed", "storage_error")
        assert error["code"] == "storage_error" and error["response_id"] == done["response_id"]
        await client.send({"type": "session.update", "conversation_id": "conv_x", "request_id": "u1"})
        [update_error] = await client.recv_until("error")
        assert (update_error["code"], update_error["request_id"]) == ("storage_error", "u1")
        store.failing = False
        again = await client.reply({"type": "message.create", "text": "hello again"})
        assert again[-1]["status"] == "completed"


async def test_a_store_that_fails_at_connect_is_told_before_the_close(tmp_path) -> None:
    """An error that ends a session reaches the client as an error event before the 1011 close."""
    store = FakeStore(failing=True)
    async with (
        run_server(tmp_path, {"store": store}) as server,
        connect(server.ws_url, created=False) as client,
    ):
        event = await client.recv()
        assert (event["type"], event["code"], event["seq"]) == ("error", "storage_error", 1)
        try:
            with trio.fail_after(5):
                await client.ws.get_message()
        except ConnectionClosed as closed:
            assert closed.reason.code == 1011
        else:
            raise AssertionError("the session should have been closed")


async def test_transcribe_clips_are_bounded_by_the_audio_budget_and_the_queue(tmp_path) -> None:
    """A burst of 30 one-second transcribe clips from one session: the audio budget (2 s burst, 3x real
    time) refuses most with audio_rate_exceeded, so only a few are ever transcribed."""
    stt = FakeSTT(seconds_per_audio_second=0.5)
    clip = base64.b64encode(tone(1.0, 16000, amplitude=0.3)).decode()
    engines = {"stt": stt, "vad_factory": FakeVAD}
    async with run_server(tmp_path, engines) as server, connect(server.ws_url) as client:
        for n in range(30):
            await client.send({"type": "transcribe", "audio": clip, "request_id": f"c{n}"})
        await client.send({"type": "ping", "request_id": "end"})
        await client.recv_until("pong")
        with trio.move_on_after(3):
            while True:
                await client.recv()
    finals = [e for e in client.received if e["type"] == "transcript.final"]
    refused = [e for e in client.received if e["type"] == "error" and e["code"] == "audio_rate_exceeded"]
    assert 2 <= len(finals) <= 5
    assert (
        len(refused) >= 1
    )  # throttled to one error per second: the rest were dropped silently, as documented
    assert len(stt.calls) == len(finals)


async def test_turn_detection_fields_left_out_keep_their_values(tmp_path) -> None:
    """session.update {turn_detection: {silence_ms: 200}} changes only silence_ms."""
    async with (
        run_server(tmp_path, {"stt": FakeSTT(), "vad_factory": FakeVAD}) as server,
        connect(server.ws_url) as client,
    ):
        before = client.received[0]["config"]["turn_detection"]
        await client.send({"type": "session.update", "turn_detection": {"silence_ms": 200}})
        [updated] = await client.recv_until("session.updated")
    after = updated["config"]["turn_detection"]
    assert after == before | {"silence_ms": 200}
