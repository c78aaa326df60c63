"""The replay log (pure) and the outbox around it (stage tests under autojump_clock): what a session keeps
for a resume, what it may drop, and when its writer has to wait."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_voice.outbox import CloseConnection, Outbox
from trio_voice.replay import Frame, ReplayGap, ReplayLog


def frame(seq: int, size: int = 10, done: tuple[str, str] | None = None) -> Frame:
    return Frame(seq, "pong", "x" * size, done)


def filled(log: ReplayLog, count: int, size: int = 10) -> ReplayLog:
    for seq in range(log.newest_seq + 1, log.newest_seq + count + 1):
        assert log.has_room(size)
        log.append(frame(seq, size))
    return log


# --- the log, sans-I/O -----------------------------------------------------------------------------


def test_unsettled_frames_are_never_evicted() -> None:
    """A full log of frames no connection has written has no room: the writer must wait."""
    log = filled(ReplayLog(max_frames=4, max_bytes=1000), 4)
    assert not log.has_room(10)
    assert (log.oldest_seq, log.newest_seq, len(log)) == (1, 4, 4)


def test_written_frames_are_evicted_oldest_first_only_to_make_room() -> None:
    """Written frames stay until room is needed, then go oldest first, as few as needed."""
    log = filled(ReplayLog(max_frames=4, max_bytes=1000), 4)
    log.written(2)
    assert len(log) == 4  # lazily: nothing dropped yet
    assert log.has_room(10)
    log.append(frame(5))
    assert (log.oldest_seq, log.evicted) == (2, 1)


def test_the_byte_bound_evicts_too() -> None:
    """Frames are bounded in bytes as well as in count."""
    log = filled(ReplayLog(max_frames=100, max_bytes=50), 5)
    log.written(5)
    assert log.has_room(30)
    log.append(frame(6, 30))
    assert log.statistics().bytes <= 50 and log.oldest_seq == 4


def test_one_huge_frame_fits_an_empty_log() -> None:
    """A frame larger than the byte bound is still taken when the log is empty, so a session never stalls."""
    log = ReplayLog(max_frames=4, max_bytes=10)
    assert log.has_room(100)
    log.append(frame(1, 100))
    assert not log.has_room(1)


def test_a_detached_log_keeps_even_written_frames() -> None:
    """With no connection attached, frames written to the dead one may not have arrived: they stay."""
    log = filled(ReplayLog(max_frames=4, max_bytes=1000), 4)
    log.written(4)
    log.detached()
    assert not log.has_room(10)
    log.settle(2)  # a resuming client says it had 1 and 2
    assert log.has_room(10) and log.oldest_seq == 2


def test_check_resume_counts_what_was_missed_or_names_why_not() -> None:
    """A resume from a kept seq counts the frames after it; an evicted or future seq is refused with its reason."""
    log = filled(ReplayLog(max_frames=4, max_bytes=1000), 4)
    log.written(4)
    assert log.has_room(10)
    log.append(frame(5))
    assert log.check_resume(5) == 0
    assert log.check_resume(1) == 4  # 2-5 kept
    with pytest.raises(ReplayGap) as evicted:
        log.check_resume(0)
    assert evicted.value.reason == "replay_overflow"
    with pytest.raises(ReplayGap) as future:
        log.check_resume(6)
    assert future.value.reason == "invalid_seq"


def test_after_names_an_evicted_frame_instead_of_skipping_it() -> None:
    """Asking for the frame after an evicted one raises instead of silently jumping ahead."""
    log = filled(ReplayLog(max_frames=2, max_bytes=1000), 2)
    log.written(2)
    assert log.has_room(10)
    log.append(frame(3))
    assert log.after(1) == frame(2)
    log.written(3)
    assert log.has_room(10)
    log.append(frame(4))
    with pytest.raises(ReplayGap):
        log.after(1)
    assert log.after(4) is None


def test_unsettled_done_lists_finished_replies_never_written() -> None:
    """The finished replies whose response.done no connection got are the ones to queue for the user."""
    log = ReplayLog(max_frames=10, max_bytes=1000)
    log.append(frame(1, done=("resp_1", "one")))
    log.append(frame(2))
    log.append(frame(3, done=("resp_2", "two")))
    log.written(2)
    assert log.unsettled_done() == [("resp_2", "two")]


# --- the outbox, with its waits --------------------------------------------------------------------


async def test_the_writer_waits_while_detached_and_resumes_with_the_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Detached and full, append waits; a resumed connection reads every frame from its cursor and the
    writer goes on as frames are written."""
    outbox = Outbox(ReplayLog(max_frames=3, max_bytes=1000))
    first = outbox.attach(0)
    outbox.detach(first)
    appended: list[int] = []

    async def writer() -> None:
        for seq in range(1, 7):
            await outbox.append(frame(seq))
            appended.append(seq)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert appended == [1, 2, 3]  # full of frames no one has seen: the writer waits
        await trio.sleep(60)
        assert appended == [1, 2, 3]
        again = outbox.attach(0)
        read = []
        while len(read) < 6:
            item = await outbox.next_frame(again)
            assert isinstance(item, Frame)
            read.append(item.seq)
            outbox.written(again, item.seq)
        assert read == [1, 2, 3, 4, 5, 6] and appended == read


async def test_a_newer_attachment_replaces_the_old_one(autojump_clock: trio.abc.Clock) -> None:
    """Attaching a resumed connection stops the old one's delivery at its next frame; its writes no
    longer count."""
    outbox = Outbox(ReplayLog(max_frames=10, max_bytes=1000))
    old = outbox.attach(0)
    await outbox.append(frame(1))
    new = outbox.attach(0)
    assert (old.current, old.replaced) == (False, True)
    assert await outbox.next_frame(old) is None
    outbox.written(old, 1)
    assert outbox.log.settled_seq == 0
    assert await outbox.next_frame(new) == frame(1)


async def test_a_close_comes_after_every_frame_before_it(autojump_clock: trio.abc.Clock) -> None:
    """The session's close is handed to the connection only once it has written everything before it."""
    outbox = Outbox(ReplayLog(max_frames=10, max_bytes=1000))
    attachment = outbox.attach(0)
    await outbox.append(frame(1))
    outbox.close(CloseConnection(1001, "bye"))
    assert await outbox.next_frame(attachment) == frame(1)
    outbox.written(attachment, 1)
    assert await outbox.next_frame(attachment) == CloseConnection(1001, "bye")
