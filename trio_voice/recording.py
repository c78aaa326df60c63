"""Recording a session: its input audio, its replies' audio and a transcript with timings, under the data dir.

``session.update {record: true}`` (if the server allows it, ``--recording allowed``) starts a recording in
``RECORDINGS/<session_id>/``:

- ``input-1.wav``: the audio the client streamed, as received (PCM16 mono at the session's input rate;
  ``input-2.wav`` … when the rate changes);
- ``reply-<response_id>.wav``: each reply's audio exactly as sent (at the voice's rate); a session that
  asked for encoded replies (``output_audio_format``) gets the stream as sent instead (``.ogg``, ``.mp3``,
  ``.aac``: the concatenated bytes are a complete file);
- ``transcript.jsonl``: one JSON object per line, in order: what the user said or typed, each reply's
  start and end (status, text, audio length), with ``t`` (seconds since the recording started) and
  ``input_ms`` (how much input audio had been recorded by then), so audio and words line up;
- ``meta.json``: the session, its user and conversation, when it started.

What is recorded is what crossed the wire: input audio as the receiver accepted it, reply events as the
session's writer numbered them (its tap), so a reply cancelled mid-way is recorded as far as it was sent.

Every WAV's header is rewritten after each append, so a file always decodes, even after a crash.

Bounds and failures: all recordings together may use ``recording_max_mb`` (:class:`RecordingBudget`);
past it, or when the disk is full (any ``OSError``), the recording stops, the client gets an ``error``
(``recording_limit_reached`` or ``recording_failed``) and ``session.updated`` shows ``record: false``; the
session goes on. Files are written in worker threads, from :func:`recording_task`, fed through a bounded
channel (a slow disk slows the session's writer down rather than piling up audio in memory).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from .codec import codes
from .errors import TrioVoiceError
from .events import AudioReady, ReplyCreated, ReplyDone, TranscriptFinal

logger = logging.getLogger(__name__)

# Items waiting for the recording's writer thread.
RECORDING_BUFFER = 64
WAV_HEADER_BYTES = 44
# Reply audio a session asked for encoded (output_audio_format) is kept as the stream that was sent.
ENCODED_EXTENSIONS = {"opus": "ogg", "mp3": "mp3", "aac": "aac"}


def reply_file(response_id: str, audio_format: str) -> str:
    """The name of a reply's audio file: a WAV of PCM16, or the encoded stream as it was sent."""
    return f"reply-{response_id}.{ENCODED_EXTENSIONS.get(audio_format, 'wav')}"


class RecordingError(TrioVoiceError):
    """Writing a recording failed (``recording_failed``) or hit its budget (``recording_limit_reached``)."""

    code = codes.RECORDING_FAILED


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """The 44-byte header of a PCM16 mono WAV file holding ``data_bytes`` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class WavWriter:
    """A PCM16 mono WAV file that is valid after every ``append`` (blocking; call it from a thread)."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.data_bytes = 0
        self._file = open(path, "wb")  # kept open across appends, closed by close()
        self._file.write(wav_header(sample_rate, 0))
        self._file.flush()

    def append(self, pcm: bytes) -> None:
        self._file.seek(0, os.SEEK_END)
        self._file.write(pcm)
        self.data_bytes += len(pcm)
        self._file.seek(0)
        self._file.write(wav_header(self.sample_rate, self.data_bytes))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RecordingBudget:
    """The disk every recording of this server may use together, counted from what is there at start-up."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        """Blocking: measures what ``root`` holds already (call it from a worker thread)."""
        self.root = root
        self.max_bytes = max_bytes
        self.used = sum(path.stat().st_size for path in _files(root))
        self._lock = threading.Lock()  # sessions' writer threads take from it at once

    def take(self, nbytes: int) -> bool:
        with self._lock:
            if self.used + nbytes > self.max_bytes:
                return False
            self.used += nbytes
            return True


def _files(root: Path) -> Iterator[Path]:
    if root.is_dir():
        yield from (path for path in root.rglob("*") if path.is_file())


@attrs.define(eq=False)
class Recording:
    """One session's recording switch, and the channel to its writer task (see the module docstring)."""

    session_id: str
    root: Path  # RECORDINGS; this session's files go to root / session_id
    active: bool = False
    started_at: float | None = None  # trio time of the first start
    input_ms: float = 0.0
    _tx: trio.MemorySendChannel[tuple[str, Any]] | None = None
    _rx: trio.MemoryReceiveChannel[tuple[str, Any]] | None = None
    _formats: dict[str, str] = attrs.field(factory=dict)  # each reply's audio format, by response_id

    def __attrs_post_init__(self) -> None:
        self._tx, self._rx = trio.open_memory_channel[tuple[str, Any]](RECORDING_BUFFER)

    @property
    def directory(self) -> Path:
        return self.root / self.session_id

    def start(self, meta: dict[str, Any]) -> None:
        if not self.active:
            self.active = True
            if self.started_at is None:
                self.started_at = trio.current_time()
            self._put_nowait(("start", meta))

    def stop(self) -> None:
        if self.active:
            self.active = False
            self._put_nowait(("stop", None))

    def close(self) -> None:
        """Nothing more will be recorded: ``recording_task`` writes what is queued, then returns."""
        self.active = False
        if self._tx is not None:
            self._tx.close()

    def _put_nowait(self, item: tuple[str, Any]) -> None:
        assert self._tx is not None
        try:
            self._tx.send_nowait(item)
        except trio.WouldBlock:
            logger.warning("session %s: recording fell behind; %s not recorded", self.session_id, item[0])

    def _line(self, kind: str, **fields: Any) -> tuple[str, Any]:
        assert self.started_at is not None
        t = round(trio.current_time() - self.started_at, 3)
        return (
            "line",
            {"t": t, "at": round(time.time(), 3), "input_ms": round(self.input_ms, 1), "type": kind} | fields,
        )

    async def on_input(self, pcm: bytes, sample_rate: int) -> None:
        """Audio the receiver accepted from the client."""
        if self.active and self._tx is not None:
            self.input_ms += len(pcm) / 2 / sample_rate * 1000.0
            await self._tx.send(("input", (pcm, sample_rate)))

    async def on_user_text(self, kind: str, text: str) -> None:
        """A typed ``message.create`` or a ``speak`` text."""
        if self.active and self._tx is not None:
            await self._tx.send(self._line(kind, text=text))

    async def on_sent(self, event: Any) -> None:
        """The session writer's tap: every event as it is numbered."""
        if not self.active or self._tx is None:
            return
        if isinstance(event, AudioReady):
            self._formats[event.response_id] = getattr(event, "format", "pcm16")
        match event:
            case AudioReady():
                await self._tx.send(("reply_audio", event))
            case TranscriptFinal(text=text) if text:
                await self._tx.send(self._line("transcript", text=text))
            case ReplyCreated(response_id=response_id):
                await self._tx.send(self._line("reply_started", response_id=response_id))
            case ReplyDone():
                await self._tx.send(
                    self._line(
                        "reply_done",
                        response_id=event.response_id,
                        status=event.status,
                        reason=event.reason,
                        text=event.text,
                        audio_ms=event.metrics.get("audio_ms"),
                        file=reply_file(event.response_id, self._formats.pop(event.response_id, "pcm16")),
                    )
                )


class _Files:
    """The open files of one recording (used only from the writer thread, one call at a time)."""

    def __init__(self, directory: Path, budget: RecordingBudget) -> None:
        self.directory = directory
        self.budget = budget
        self.input: WavWriter | None = None
        self.inputs = 0
        self.replies: dict[str, Any] = {}  # response_id → a WavWriter, or an open file of encoded audio

    def _charge(self, nbytes: int) -> None:
        if not self.budget.take(nbytes):
            raise RecordingError(
                f"recordings use their {self.budget.max_bytes // 2**20} MiB already",
                code=codes.RECORDING_LIMIT_REACHED,
            )

    def handle(self, kind: str, value: Any) -> None:
        if kind == "start":
            self.directory.mkdir(parents=True, exist_ok=True)
            text = json.dumps(value, indent=1)
            self._charge(len(text))
            (self.directory / "meta.json").write_text(text, encoding="utf-8")
        elif kind == "stop":
            self.close()
        elif kind == "input":
            pcm, rate = value
            if self.input is None or self.input.sample_rate != rate:
                self._close_input()
                self.inputs += 1
                self._charge(WAV_HEADER_BYTES)
                self.input = WavWriter(self.directory / f"input-{self.inputs}.wav", rate)
            self._charge(len(pcm))
            self.input.append(pcm)
        elif kind == "reply_audio":
            audio_format = getattr(value, "format", "pcm16")
            writer = self.replies.get(value.response_id)
            if writer is None:
                path = self.directory / reply_file(value.response_id, audio_format)
                if audio_format == "pcm16":
                    self._charge(WAV_HEADER_BYTES)
                    writer = WavWriter(path, value.sample_rate)
                else:
                    writer = open(path, "ab")
                self.replies[value.response_id] = writer
            self._charge(len(value.audio))
            if isinstance(writer, WavWriter):
                writer.append(value.audio)
            else:
                writer.write(value.audio)
                writer.flush()
        elif kind == "line":
            line = json.dumps(value, ensure_ascii=False) + "\n"
            self._charge(len(line.encode()))
            with open(self.directory / "transcript.jsonl", "a", encoding="utf-8") as transcript:
                transcript.write(line)
            if value["type"] == "reply_done":
                writer = self.replies.pop(value["response_id"], None)
                if writer is not None:
                    writer.close()

    def _close_input(self) -> None:
        if self.input is not None:
            self.input.close()
            self.input = None

    def close(self) -> None:
        self._close_input()
        for writer in self.replies.values():
            writer.close()
        self.replies.clear()


async def recording_task(recording: Recording, budget: RecordingBudget, *, on_failure: Any) -> None:
    """Write what the session records, in order, until the session ends.

    ``on_failure(error)`` is awaited when writing fails (the disk is full) or the budget is spent: the
    recording has stopped by then, and the session goes on.
    """
    files = _Files(recording.directory, budget)
    assert recording._rx is not None
    # Whether the queue, read in order, is inside a start … stop stretch. Not ``recording.active``: a
    # stop is immediate there, while what was queued before it (a reply's last line) is still to write.
    writing = False
    try:
        async with recording._rx:
            async for kind, value in recording._rx:
                if kind in ("start", "stop"):
                    writing = kind == "start"
                elif not writing:
                    continue  # queued after a failure, before the next start
                try:
                    await trio.to_thread.run_sync(files.handle, kind, value)
                except (OSError, RecordingError) as exc:
                    error = (
                        exc
                        if isinstance(exc, RecordingError)
                        else RecordingError(f"cannot write the recording: {exc}")
                    )
                    logger.warning("session %s: recording stopped: %s", recording.session_id, error)
                    recording.active = writing = False
                    await trio.to_thread.run_sync(files.close)
                    await on_failure(error)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(files.close)


def describe(directory: Path) -> dict[str, Any]:
    """What a recording holds, for ``GET /v1/sessions/{id}/recording`` (blocking: reads headers and the transcript)."""
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    files: list[dict[str, Any]] = []
    for path in sorted(directory.iterdir()):
        if not path.name.startswith(("input-", "reply-")):
            continue
        entry: dict[str, Any] = {
            "name": path.name,
            "kind": "input" if path.name.startswith("input-") else "reply",
            "bytes": path.stat().st_size,
        }
        if path.suffix == ".wav":
            with open(path, "rb") as wav:
                header = wav.read(WAV_HEADER_BYTES)
            sample_rate, data_bytes = (
                struct.unpack("<I", header[24:28])[0],
                struct.unpack("<I", header[40:44])[0],
            )
            entry |= {
                "sample_rate": sample_rate,
                "duration_ms": round(data_bytes / 2 / sample_rate * 1000.0, 1),
            }
        files.append(entry)
    transcript_path = directory / "transcript.jsonl"
    transcript = []
    if transcript_path.exists():
        transcript = [
            json.loads(line) for line in transcript_path.read_text(encoding="utf-8").splitlines() if line
        ]
    return {**meta, "files": files, "transcript": transcript}
