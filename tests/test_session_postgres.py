"""Sessions on the PostgreSQL store: two server instances sharing one database, as behind a load balancer."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.conftest import IO_TIMEOUT, RunningServer, connect, run_server
from trio_voice.storage.postgres import PostgresStore
from trio_voice.testing import FakeLLM


async def wait_sessions_closed(server: RunningServer) -> None:
    """Until every session of ``server`` has ended: a session ends only after its last reply is stored."""
    with trio.fail_after(IO_TIMEOUT):
        while server.telemetry.sessions_open._value.get() > 0:  # noqa: ASYNC110 - teardown has no event to await
            await trio.sleep(0.01)


async def test_conversation_continues_on_another_instance(tmp_path: Path, pg_url: str) -> None:
    """A conversation stored by one instance continues on another by its id (session.update), and the
    second instance's LLM sees the first one's turns; both replies are stored, with their turn records."""
    llm_a, llm_b = FakeLLM(reply=lambda messages: "Nice to meet you, Ada."), FakeLLM()
    async with (
        run_server(tmp_path, {"llm": llm_a}, database_url=pg_url) as a,
        run_server(tmp_path, {"llm": llm_b}, database_url=pg_url) as b,
    ):
        assert isinstance(a.engines.store, PostgresStore) and isinstance(b.engines.store, PostgresStore)
        async with connect(a.ws_url) as client:
            conversation = client.received[0]["conversation_id"]
            events = await client.reply({"type": "message.create", "text": "My name is Ada."})
            assert events[-1]["status"] == "completed"
        await wait_sessions_closed(a)

        async with connect(b.ws_url) as client:
            await client.send({"type": "session.update", "conversation_id": conversation})
            updated = await client.recv()
            assert (updated["type"], updated["conversation_id"]) == ("session.updated", conversation)
            events = await client.reply({"type": "message.create", "text": "What is my name?"})
            assert events[-1]["status"] == "completed"
        await wait_sessions_closed(b)

        assert llm_a.calls and [(m["role"], m["content"]) for m in llm_b.calls[-1][1:]] == [
            ("user", "My name is Ada."),
            ("assistant", "Nice to meet you, Ada."),
            ("user", "What is my name?"),
        ]
        history = await a.engines.store.history(conversation, limit=10)
        assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
        assert history[-1].text == events[-1]["text"]
        turns = await a.engines.store.recent_turns(10)
        assert [(t["conversation_id"], t["status"]) for t in turns] == [(conversation, "completed")] * 2
