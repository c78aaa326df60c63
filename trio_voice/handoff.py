"""The voice listener of one worker among several (``--workers N``): a shared port, and resumes routed home.

Workers share the WebSocket port with ``SO_REUSEPORT``: the kernel spreads new connections over them by
a hash of the client's address, which knows nothing of sessions. A session lives in one worker, so a
client that resumes must reach that worker: as behind nginx, it reconnects to
``/v1/voice?instance=INSTANCE_ID`` (the ``instance_id`` of its ``session.created``; each worker is an
instance). Before the WebSocket handshake, the worker that accepted the connection *peeks* at the request
line (``MSG_PEEK``: nothing is consumed), and when ``instance`` names a sibling it passes the socket
itself to that sibling over a Unix socket (``SCM_RIGHTS``); the sibling then reads the untouched request
and handshakes as if it had accepted the connection. Everything else is served where it landed. ::

    serve_voice_listener(handle, config)          one per worker (trio_voice.ws_server)
    ├── accept_task       TCP accepts → a peek_task each → here, or to a sibling
    ├── receive_task      sockets handed over by siblings (Unix socket) → here
    └── WebSocketServer   trio-websocket, reading the ChannelListener both feed

With one process (no ``worker_peers``) the listener is a plain TCP listener, as before.

Error handling: a client that sends no request line within ``PEEK_TIMEOUT`` is closed; a sibling that
cannot be reached (it is restarting) leaves the connection here, where the resume gets a clear answer.
"""

from __future__ import annotations

import array
import logging
import socket
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import WebSocketServer

from .config import Config

logger = logging.getLogger(__name__)

# Seconds a new connection has to send its request line before it is dropped.
PEEK_TIMEOUT = 5.0
# Bytes peeked for the request line (a request line longer than this is served where it landed).
PEEK_BYTES = 4096
# Accepted connections waiting for the WebSocket server: bounded, so a flood waits in the kernel's backlog.
ACCEPTED_BUFFER = 64
BACKLOG = 1024


class ChannelListener(trio.abc.Listener[trio.SocketStream]):
    """A listener whose connections come from a channel (accepted here, or handed over)."""

    def __init__(self, receive: trio.MemoryReceiveChannel[trio.SocketStream]) -> None:
        self._receive = receive

    async def accept(self) -> trio.SocketStream:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("the listener is closed") from None

    async def aclose(self) -> None:
        await self._receive.aclose()


def bind_tcp(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket; with ``reuse_port`` several processes may bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def instance_of(request_head: bytes) -> str | None:
    """The ``instance`` query parameter of an HTTP request line, if the head holds a whole one."""
    line, sep, _ = request_head.partition(b"\r\n")
    if not sep:
        return None
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    try:
        query = urlsplit(parts[1].decode("ascii")).query
    except (UnicodeDecodeError, ValueError):
        return None
    values = parse_qs(query).get("instance")
    return values[0] if values else None


async def peek_request_line(sock: trio.socket.SocketType) -> bytes:
    """The start of what the client sent, without consuming it: until a line end, PEEK_BYTES, or EOF."""
    head = b""
    while True:
        await trio.lowlevel.wait_readable(sock)
        peeked = await sock.recv(PEEK_BYTES, socket.MSG_PEEK)
        if not peeked or b"\r\n" in peeked or len(peeked) >= PEEK_BYTES:
            return peeked  # (empty: the client went away)
        if peeked == head:
            await trio.sleep(0.01)  # the rest of the line is on its way: do not spin on the same bytes
        head = peeked


async def hand_over(stream: trio.SocketStream, path: str) -> bool:
    """Pass the connection's socket to the sibling listening on Unix socket ``path``; close ours."""
    try:
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
            await unix.connect(path)
            fds = array.array("i", [stream.socket.fileno()])
            await unix.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    except OSError as exc:
        logger.warning("could not hand a connection to %s: %s; serving it here", path, exc)
        return False
    await stream.aclose()  # the sibling holds its own copy of the descriptor
    return True


async def accept_task(
    listener: trio.SocketListener,
    accepted: trio.MemorySendChannel[trio.SocketStream],
    *,
    siblings: dict[str, str],
) -> None:
    """Accept connections; each is peeked at in its own task and kept here or handed to its sibling."""

    async def route(stream: trio.SocketStream) -> None:
        with trio.move_on_after(PEEK_TIMEOUT) as waited:
            head = await peek_request_line(stream.socket)
        if waited.cancelled_caught or not head:
            await stream.aclose()
            return
        target = siblings.get(instance_of(head) or "")
        if target is not None and await hand_over(stream, target):
            return
        await accepted.send(stream)

    async with trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            nursery.start_soon(route, stream)


async def receive_task(
    path: str, accepted: trio.MemorySendChannel[trio.SocketStream], *, task_status: Any
) -> None:
    """Listen on Unix socket ``path`` for sockets siblings hand over; serve each here."""
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        await server.bind(path)
        server.listen(BACKLOG)
        task_status.started()
        while True:
            conn, _ = await server.accept()
            with conn:
                try:
                    _, ancdata, _, _ = await conn.recvmsg(1, socket.CMSG_LEN(array.array("i").itemsize))
                except OSError as exc:
                    logger.warning("a hand-over failed: %s", exc)
                    continue
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = array.array("i", data[: array.array("i").itemsize])[0]
                    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
                    await accepted.send(trio.SocketStream(sock))


async def serve_voice_listener(
    handle: Any,
    config: Config,
    *,
    handler_nursery: trio.Nursery | None,
    max_message_size: int,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket connections with ``handle`` until cancelled; ``task_status.started(port)``."""
    sock = bind_tcp(config.host, config.ws_port, reuse_port=config.workers > 1)
    port = sock.getsockname()[1]
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    async with trio.open_nursery() as nursery:
        if not config.worker_peers:
            listeners: list[trio.abc.Listener[Any]] = [listener]
        else:
            accepted, receive = trio.open_memory_channel[trio.SocketStream](ACCEPTED_BUFFER)
            own = config.instance_id
            siblings = {name: path for name, path in config.worker_peers if name != own}
            own_path = dict(config.worker_peers)[own]  # type: ignore[index]
            await nursery.start(partial(receive_task, own_path, accepted.clone()))
            nursery.start_soon(partial(accept_task, listener, accepted, siblings=siblings))
            listeners = [ChannelListener(receive)]
        server = WebSocketServer(
            handle, listeners, handler_nursery=handler_nursery, max_message_size=max_message_size
        )
        await nursery.start(server.run)
        task_status.started(port)
