"""A session's replay log, sans-I/O: the numbered frames it sent, bounded in count and bytes, for resumes.

The writer numbers every event (``codec.ServerConnection``) and appends the rendered frame here before
any connection sees it; a connection reads the log from its cursor. A client that reconnects says the
last ``seq`` it received and is sent everything after it, so the log keeps frames a socket may have
swallowed: TCP accepts bytes long before a peer reads them, and a dropped connection loses them.

Rules:

- Frames are appended in ``seq`` order, 1, 2, 3, … with no gaps.
- A frame may be evicted only once it is *settled*: written to the attached connection, or older than
  the ``last_seq`` a resuming client reported. Eviction is lazy (only to make room), oldest first, so the
  log keeps as much history as its bounds allow.
- While no connection is attached nothing new settles, so a session that goes on producing (a reply
  running while its client is away) fills the log and then has to wait: ``has_room`` says no. Nothing a
  client may not have seen is ever dropped to make room.
- One frame larger than ``max_bytes`` is still accepted into an empty log (or the session would stall).
- ``since(last_seq)`` gives the frames after ``last_seq``, or raises :class:`ReplayGap` with a stable
  reason when it cannot: the client asks for frames already evicted (``replay_overflow``) or for
  frames never sent (``invalid_seq``).
"""

from __future__ import annotations

from collections import deque

import attrs

from .codec.codes import ResumeFailure

# ReplayGap reasons (the ``reason`` of a ``resume_failed`` error; see protocol/errors.md).
REPLAY_OVERFLOW = ResumeFailure.REPLAY_OVERFLOW
INVALID_SEQ = ResumeFailure.INVALID_SEQ


@attrs.frozen
class Frame:
    """One event as sent: its ``seq``, its wire ``type`` and its rendered JSON ``text``.

    ``done`` is set on a ``response.done`` of a completed reply: (response_id, its text), so a session
    whose client never came back can tell which finished replies were never delivered.
    """

    seq: int
    type: str
    text: str
    done: tuple[str, str] | None = None

    @property
    def size(self) -> int:
        return len(self.text)


class ReplayGap(Exception):
    """The frames after ``last_seq`` cannot be replayed; ``reason`` is ``replay_overflow`` or ``invalid_seq``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class ReplayStatistics:
    frames: int
    bytes: int
    oldest_seq: int  # the first seq still kept (newest_seq + 1 when empty)
    newest_seq: int
    settled_seq: int
    written_seq: int
    evicted: int  # frames evicted so far


class ReplayLog:
    """The bounded log of one session's frames. Not thread-safe; the session's tasks share it in one thread."""

    def __init__(self, *, max_frames: int, max_bytes: int) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("a replay log needs room for at least one frame")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self.newest_seq = 0
        self.settled_seq = 0  # frames up to this seq may be evicted
        self.written_seq = 0  # the newest frame written to any connection
        self.evicted = 0

    @property
    def oldest_seq(self) -> int:
        return self._frames[0].seq if self._frames else self.newest_seq + 1

    def __len__(self) -> int:
        return len(self._frames)

    def settle(self, seq: int) -> None:
        """A resuming client received every frame up to ``seq``: they may be evicted."""
        self.settled_seq = max(self.settled_seq, min(seq, self.newest_seq))

    def written(self, seq: int) -> None:
        """Frame ``seq`` was written to the attached connection: it, and every one before it, may be evicted."""
        self.written_seq = max(self.written_seq, seq)
        self.settle(seq)

    def detached(self) -> None:
        """The connection is gone: nothing kept may be evicted until a client says what it received."""
        self.settled_seq = min(self.settled_seq, self.oldest_seq - 1)

    def has_room(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes fits, after evicting what may be evicted (which this does)."""
        while self._frames and not self._fits(size) and self._frames[0].seq <= self.settled_seq:
            evicted = self._frames.popleft()
            self._bytes -= evicted.size
            self.evicted += 1
        return not self._frames or self._fits(size)

    def _fits(self, size: int) -> bool:
        return len(self._frames) < self.max_frames and self._bytes + size <= self.max_bytes

    def append(self, frame: Frame) -> None:
        """Keep ``frame``, the next one. The caller checked ``has_room(frame.size)``."""
        if frame.seq != self.newest_seq + 1:
            raise ValueError(f"frame {frame.seq} appended where {self.newest_seq + 1} was due")
        assert not self._frames or self._fits(frame.size), "append without room"
        self._frames.append(frame)
        self._bytes += frame.size
        self.newest_seq = frame.seq

    def force_append(self, frame: Frame) -> None:
        """Keep ``frame`` whatever the bounds: a session's last words, after which nothing is appended."""
        self.has_room(frame.size)
        self._frames.append(frame)
        self._bytes += frame.size
        self.newest_seq = frame.seq

    def after(self, seq: int) -> Frame | None:
        """The frame with ``seq + 1``, if it is kept (None when ``seq`` is the newest)."""
        index = seq + 1 - self.oldest_seq
        if 0 <= index < len(self._frames):
            return self._frames[index]
        if seq + 1 < self.oldest_seq:
            raise ReplayGap(REPLAY_OVERFLOW, f"frame {seq + 1} was evicted")
        return None

    def newest_of(self, wire_type: str) -> int | None:
        """The seq of the newest kept frame of ``wire_type``, if any."""
        for frame in reversed(self._frames):
            if frame.type == wire_type:
                return frame.seq
        return None

    def check_resume(self, last_seq: int) -> int:
        """How many frames a client that received up to ``last_seq`` has missed.

        Raises:
            ReplayGap: ``invalid_seq`` if ``last_seq`` is negative or past the newest frame;
                ``replay_overflow`` if frames after it were evicted.
        """
        if last_seq < 0 or last_seq > self.newest_seq:
            raise ReplayGap(
                INVALID_SEQ, f"last_seq {last_seq} is not a seq this session sent (0-{self.newest_seq})"
            )
        if last_seq + 1 < self.oldest_seq:
            raise ReplayGap(
                REPLAY_OVERFLOW,
                f"events {last_seq + 1}-{self.oldest_seq - 1} are no longer kept (the replay buffer holds "
                f"{self.max_frames} events or {self.max_bytes} bytes)",
            )
        return self.newest_seq - last_seq

    def unsettled_done(self) -> list[tuple[str, str]]:
        """The completed replies whose ``response.done`` was never written to a connection."""
        return [
            frame.done for frame in self._frames if frame.done is not None and frame.seq > self.written_seq
        ]

    def statistics(self) -> ReplayStatistics:
        return ReplayStatistics(
            frames=len(self._frames),
            bytes=self._bytes,
            oldest_seq=self.oldest_seq,
            newest_seq=self.newest_seq,
            settled_seq=self.settled_seq,
            written_seq=self.written_seq,
            evicted=self.evicted,
        )
