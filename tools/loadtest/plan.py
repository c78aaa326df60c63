"""What a load test says: the questions (typed text or spoken WAVs), think time, and which turns get interrupted.

A :class:`Plan` is a frozen value built once by the CLI or a benchmark and shared by every session; its
methods are pure, so each session's script is deterministic (session *s* starts at question *s*, and
interruptions are spread evenly, exactly ``interrupt_share`` of turns, staggered between sessions).
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np

from trio_voice import codec
from trio_voice.audio import float_to_pcm16, read_wav, resample

SAMPLE_RATE = 16000  # the server's default input rate; every WAV is resampled to it
SPEECH_RMS = 0.01  # a 20 ms window louder than this counts as speech when locating a clip's start and end
TEXT_QUESTIONS = (
    "What is the capital of France?",
    "How far away is the Moon?",
    "Why is the sky blue?",
    "What is a good name for a cat?",
    "How many legs does a spider have?",
    "What is the boiling point of water?",
    "Can you tell me a fun fact about octopuses?",
    "What should I cook for dinner tonight?",
    "How do airplanes stay in the air?",
    "What is the tallest mountain in the world?",
    "Who wrote Romeo and Juliet?",
    "What is photosynthesis?",
    "How many days are there in a leap year?",
    "What is the largest ocean on Earth?",
    "Why do cats purr?",
    "How do I make a cup of tea?",
    "What is the speed of light?",
    "Which planet is closest to the Sun?",
    "What does a bee do all day?",
    "How long does it take to walk five kilometres?",
    "What is the difference between weather and climate?",
    "Give me a tip for sleeping better.",
)
# Questions read with a hesitation in the middle, where a speaker searches for the next word: after a
# preposition, an article, a verb that needs its object (the comma marks it; the pause is stretched to the
# given seconds). A turn detector that answers at the pause answers half a question.
PAUSED_QUESTIONS = (
    ("What is the capital of, France?", 0.3),
    ("How far away is, the Moon?", 0.4),
    ("Can you tell me a fun fact about, octopuses?", 0.5),
    ("What should I cook for, dinner tonight?", 0.6),
    ("How do airplanes stay in, the air?", 0.3),
    ("What is the tallest mountain in, the world?", 0.4),
    ("Who wrote Romeo and, Juliet?", 0.5),
    ("How many days are there in a, leap year?", 0.6),
    ("What is the difference between, weather and climate?", 0.3),
    ("Give me a tip for, sleeping better.", 0.4),
    ("Which planet is closest to, the Sun?", 0.5),
    ("How long does it take to, walk five kilometres?", 0.6),
)
# Questions with long answers: the server is still generating when the user barges in.
STORY_QUESTIONS = (
    "Tell me a long story about a dragon who learns to fly.",
    "Describe a perfect day at the beach, from morning to night, in detail.",
    "Explain step by step how a car engine works.",
    "Tell me the whole history of the city of Rome.",
    "Describe every planet of the solar system, one by one.",
    "Tell me a long fairy tale about a brave little mouse.",
    "Explain in detail how bread is made, from the field to the table.",
    "Tell me a long story about a robot who wants to be a chef.",
)


@attrs.frozen
class Question:
    """One user turn: ``text`` is typed (``message.create``); ``pcm`` (PCM16LE mono, 16 kHz) is spoken.

    ``speech_start`` / ``speech_end`` are byte offsets in ``pcm`` of the first and last loud 20 ms
    window: the client times "speech start sent" and "end of speech sent" from the frames holding them.
    """

    name: str
    text: str | None = None
    pcm: bytes | None = attrs.field(default=None, repr=lambda b: "None" if b is None else f"<{len(b)} bytes>")
    speech_start: int = 0
    speech_end: int = 0

    @property
    def kind(self) -> str:
        return "text" if self.pcm is None else "voice"

    @classmethod
    def typed(cls, text: str) -> Question:
        return cls(name=text, text=text)

    @classmethod
    def spoken(cls, name: str, pcm: bytes) -> Question:
        start, end = speech_bounds(pcm)
        return cls(name=name, pcm=pcm, speech_start=start, speech_end=end)

    @classmethod
    def from_wav(cls, path: Path) -> Question:
        """Load a WAV file (any rate, any channels) as a spoken question at 16 kHz."""
        samples, rate = read_wav(Path(path).read_bytes())
        if rate != SAMPLE_RATE:
            samples = resample(samples, rate, SAMPLE_RATE)
        return cls.spoken(Path(path).name, float_to_pcm16(samples))


def speech_bounds(pcm: bytes, *, rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """Byte offsets of the first and just past the last loud 20 ms window of ``pcm`` (whole clip if silent)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    window = rate // 50
    n = len(x) // window
    if n == 0:
        return 0, len(pcm)
    rms = np.sqrt(np.mean(np.square(x[: n * window].reshape(n, window)), axis=1))
    loud = np.flatnonzero(rms > SPEECH_RMS)
    if loud.size == 0:
        return 0, len(pcm)
    return int(loud[0]) * window * 2, min(len(pcm), (int(loud[-1]) + 1) * window * 2)


def load_questions(specs: list[str]) -> list[Question]:
    """``text`` → the built-in typed questions; ``*.wav`` → a spoken question; ``*.txt`` → one per line;
    anything else → that text, typed."""
    out: list[Question] = []
    for spec in specs:
        path = Path(spec)
        if spec == "text":
            out += [Question.typed(t) for t in TEXT_QUESTIONS]
        elif path.suffix.lower() == ".wav":
            out.append(Question.from_wav(path))
        elif path.suffix.lower() == ".txt" and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            out += [Question.typed(line.strip()) for line in lines if line.strip()]
        else:
            out.append(Question.typed(spec))
    if not out:
        raise ValueError("no questions")
    return out


@attrs.frozen(kw_only=True)
class Plan:
    """The script every session follows.

    Args:
        questions: asked in turn, cycling; session ``s`` starts at question ``s``.
        think_time: seconds between a reply's ``response.done`` and the next question.
        interrupt_share: fraction of turns interrupted after the reply's first audio.
        interrupt_by: ``"cancel"`` (``response.cancel``) or ``"speech"`` (barge-in: the next spoken
            question, or ``interrupt_speech``, streamed over the reply; it becomes the next turn).
        interrupt_speech: what to say when barging in; default the next question if it is spoken.
        frame_ms: milliseconds of audio per binary frame, sent at real-time pace.
        tail_silence_s: silence streamed after each spoken question, so the server's VAD ends the turn.
        idle_audio: keep streaming silence between questions, like an open microphone.
        turn_timeout: seconds a turn may take (question to ``response.done``) before it counts as failed.
        listen: wait until the reply's audio would have finished playing (from its first audio, in
            real time) before the think time: users who listen to the whole answer.
        conversation_turns: turns per WebSocket session; a user then reconnects and starts a new
            conversation (empty history). ``None``: one session for all of a user's turns.
        turn_detection: sent in a ``session.update`` when each session opens (``None``: the server's
            default), e.g. to compare ``semantic`` with ``server_vad`` on one server.
        drop_rate: fraction of turns during which the connection is dropped abruptly (no close frame)
            after the reply's first audio, then resumed with ``session.resume``.
        protocol: ``"voice"`` (``/v1/voice``) or ``"realtime"`` (``/v1/realtime``, the OpenAI Realtime
            API); the URL must be the matching endpoint. ``drop_rate`` and ``turn_detection`` are
            /v1/voice's only (the realtime API has no resume, and keeps server_vad).
    """

    questions: tuple[Question, ...] = attrs.field(converter=tuple)
    think_time: float = 1.0
    interrupt_share: float = 0.0
    interrupt_by: str = attrs.field(default="cancel", validator=attrs.validators.in_(("cancel", "speech")))
    interrupt_speech: Question | None = None
    frame_ms: int = 20
    tail_silence_s: float = 0.8
    idle_audio: bool | None = None  # None: when any question is spoken
    turn_timeout: float = 30.0
    conversation_turns: int | None = None
    listen: bool = False
    turn_detection: codec.TurnDetection | None = None
    drop_rate: float = 0.0
    protocol: str = attrs.field(default="voice", validator=attrs.validators.in_(("voice", "realtime")))

    def __attrs_post_init__(self) -> None:
        if self.protocol == "realtime" and (self.drop_rate > 0 or self.turn_detection is not None):
            # The realtime API has no session.resume, and its turn detection is server_vad.
            raise ValueError("drop_rate and turn_detection are /v1/voice settings, not realtime ones")

    @property
    def needs_audio(self) -> bool:
        spoken = any(q.pcm is not None for q in self.questions)
        return spoken or (self.interrupt_share > 0 and self.interrupt_by == "speech")

    @property
    def streams_idle_audio(self) -> bool:
        if self.idle_audio is not None:
            return self.idle_audio
        return any(q.pcm is not None for q in self.questions)

    def question(self, session: int, turn: int) -> Question:
        return self.questions[(session + turn) % len(self.questions)]

    def interrupts(self, session: int, turn: int) -> bool:
        """Whether this turn is interrupted: exactly ``interrupt_share`` of turns, evenly spread."""
        k = session * 7 + turn  # staggered, so sessions do not all interrupt at the same turn numbers
        return math.floor((k + 1) * self.interrupt_share) > math.floor(k * self.interrupt_share)

    def drops(self, session: int, turn: int) -> bool:
        """Whether the connection drops during this turn: exactly ``drop_rate`` of turns, evenly spread
        (staggered apart from the interruptions)."""
        k = session * 11 + turn + 3
        return math.floor((k + 1) * self.drop_rate) > math.floor(k * self.drop_rate)

    def barge_in_speech(self, session: int, turn: int) -> Question:
        if self.interrupt_speech is not None:
            return self.interrupt_speech
        following = self.question(session, turn + 1)
        if following.pcm is None:
            raise ValueError("interrupt_by='speech' with typed questions needs interrupt_speech (a WAV)")
        return following
