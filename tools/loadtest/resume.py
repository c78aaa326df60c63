"""Dropping a conversation's connection abruptly and resuming it, for ``--drop-rate``.

:class:`ResumableSocket` stands in for the conversation's WebSocket: the reader, the microphone and the
driver send and read through it as before. :meth:`ResumableSocket.drop_and_resume` closes the TCP
connection under the WebSocket without a close frame (what a network change looks like to the server),
opens a new connection, and sends ``session.resume`` with the last ``seq`` the conversation's protocol
checker saw. Reads and sends that meet the dead connection meanwhile wait for the new one. The resumed
stream goes through the same checker, so an event lost or repeated across the resume is a ``seq_gap`` or
a ``seq_backwards`` there, counted event by event (``events_lost``, ``events_duplicated``).
"""

from __future__ import annotations

from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from trio_voice import codec

from .checks import ProtocolChecker
from .report import Recorder

CONNECT_TIMEOUT = 20.0
CLOSE_TIMEOUT = 2.0


class ResumableSocket:
    """The conversation's WebSocket, replaceable by a resumed one (see the module docstring)."""

    def __init__(
        self,
        ws: WebSocketConnection,
        created: dict[str, Any],
        checker: ProtocolChecker,
        recorder: Recorder,
        *,
        url: str,
        nursery: trio.Nursery,
    ) -> None:
        self.ws = ws
        self.original = ws
        self.created = created
        self.checker = checker
        self.recorder = recorder
        self.url = url
        self.nursery = nursery
        self.resuming = False
        self._ready = trio.Event()
        self._ready.set()

    async def send_message(self, data: str | bytes) -> None:
        while True:
            ws = self.ws
            try:
                await ws.send_message(data)
                return
            except ConnectionClosed:
                if not self.resuming and ws is self.ws:
                    raise
                await self._ready.wait()  # not sent: it goes out on the resumed connection

    async def get_message(self) -> str | bytes:
        while True:
            ws = self.ws
            try:
                return await ws.get_message()
            except ConnectionClosed:
                if not self.resuming and ws is self.ws:
                    raise
                await self._ready.wait()

    async def drop_and_resume(self) -> bool:
        """Vanish from the server mid-conversation, come back, and resume; False if the server refused."""
        if self.resuming or "resume_token" not in self.created:
            return False
        self.resuming, self._ready = True, trio.Event()
        old = self.ws
        try:
            await old._stream.aclose()  # no close frame: trio-websocket has no public way to vanish
            with trio.fail_after(CONNECT_TIMEOUT):
                new = await connect_websocket_url(self.nursery, self.url)
                fresh = codec.decode_server(await new.get_message())  # the new connection's own session
                assert fresh["type"] == "session.created", fresh
                request = codec.SessionResume(
                    session_id=self.created["session_id"],
                    resume_token=self.created["resume_token"],
                    last_seq=self.checker.expected_seq - 1,
                )
                await new.send_message(codec.encode_client(request))
                answer = codec.decode_server(await new.get_message())
        except (OSError, ConnectionClosed, trio.TooSlowError) as exc:
            self.recorder.error(f"resume_failed:{type(exc).__name__}")
            return False
        finally:
            self.resuming = False
            self._ready.set()
        if answer["type"] != "session.resumed":
            self.recorder.error(f"resume_failed:{answer.get('reason', answer['type'])}")
            return False
        self.ws = new
        self.recorder.resumes += 1
        return True

    async def close_resumed(self) -> None:
        """Close a resumed connection properly (the original one is closed by its context manager)."""
        if self.ws is not self.original:
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await self.ws.aclose()
                except ConnectionClosed:
                    pass
