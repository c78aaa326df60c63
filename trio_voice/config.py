"""Server configuration: every knob in one frozen record, with the reason for each default.

Each field is declared with :func:`setting`, which carries what the command line and the environment
need (a help line, bounds, the flag's name): ``trio_voice.cli`` builds ``trio-voice serve``'s options
from this one table, so every field, limits included, is settable as ``--field-name VALUE`` or
``TRIO_VOICE_FIELD_NAME=VALUE`` without being copied by hand. ``Config`` checks its bounds and
invariants when built and raises :class:`ConfigError` naming the field.

Built once at start-up and passed down; nothing reads the environment or globals after that. Use
``attrs.evolve(config, field=value)`` for variants (it validates again).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to three short, "
    "plain sentences. Never use markdown, lists, code, emoji or special symbols. Spell out what a listener "
    "needs to hear."
)


# An instance's name goes into URLs (?instance=NAME) and the load balancer's map: keep it plain.
INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def default_data_dir() -> Path:
    """Where prepared models and the conversation database live unless told otherwise."""
    base = os.environ.get("TRIO_VOICE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trio-voice"
    )
    return Path(base)


def setting(
    default: Any = attrs.NOTHING,
    help: str = "",
    *,
    factory: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    env: str | None = None,
    cli: bool = True,
    reader: Any = None,
    converter: Any = None,
) -> Any:
    """A ``Config`` field with what the CLI, the environment and validation need to know about it.

    ``minimum``/``maximum`` bound it inclusively, ``above`` exclusively; ``flag`` and ``env`` override
    the derived names (``--field-name``, ``TRIO_VOICE_FIELD_NAME``); ``cli=False`` keeps it off the
    command line (values that only tests and tools vary); ``reader`` turns the option's one string into
    the value (a file of phrases, say) and may raise ``ConfigError``.
    """
    metadata = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
        "choices": choices,
        "flag": flag,
        "env": env,
        "cli": cli,
        "reader": reader,
    }
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata, converter=converter)
    return attrs.field(default=default, metadata=metadata, converter=converter)


def read_phrases_file(path: str | Path) -> tuple[str, ...]:
    """One phrase per line of a UTF-8 file; blank lines and lines starting with '#' are skipped.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the phrases file {path}: {exc}") from None
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _optional_path(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _paths(value: Any) -> tuple[Path, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        return (Path(value),)
    return tuple(Path(item) for item in value)


@attrs.frozen(kw_only=True)
class Config:
    # --- listeners --------------------------------------------------------------------------------
    host: str = setting("127.0.0.1", "address to listen on")
    ws_port: int = setting(8765, "WebSocket port (ws://HOST:PORT/v1/voice); 0 picks a free one", minimum=0, maximum=65535, flag="--port")  # fmt: skip
    http_port: int = setting(8080, "HTTP port: health, metrics, fallbacks, demo page; 0 picks a free one", minimum=0, maximum=65535)  # fmt: skip

    # --- storage ----------------------------------------------------------------------------------
    data_dir: Path = setting(factory=default_data_dir, help="models cache and database", converter=Path)
    db_path: Path | None = setting(None, "SQLite file (default DATA_DIR/conversations.sqlite3)", flag="--db", converter=_optional_path)  # fmt: skip
    database_url: str | None = setting(None, "postgresql://user@host/db: a conversation store several instances share, instead of the SQLite file")  # fmt: skip
    # --- several instances (issue 14): shared state in Redis, each instance named in resume routes ------
    redis_url: str | None = setting(None, "redis://host:6379/0: resume routes, presence, typing and fan-out shared by several instances (default: in this process)")  # fmt: skip
    redis_prefix: str = setting("trio-voice:", "prefix of every Redis key and channel (several deployments may share one Redis)")  # fmt: skip
    # --workers N (trio_voice.workers): N processes share the ports; each is an instance of its own.
    workers: int = setting(1, "server processes sharing the ports (SO_REUSEPORT), one per core; they share one embedded llama-server", minimum=1)  # fmt: skip
    worker_peers: tuple[tuple[str, str], ...] = setting((), "the workers' (instance_id, hand-over socket) pairs, set by the parent process", cli=False, converter=tuple)  # fmt: skip
    instance_id: str | None = setting(None, "this instance's name in resume routes and session.created, as the load balancer routes it (?instance=NAME); default: a random one")  # fmt: skip
    history_messages: int = setting(20, "messages of context sent to the LLM per turn (newest kept)", minimum=1)  # fmt: skip

    # --- LLM --------------------------------------------------------------------------------------
    llm_url: str | None = setting(None, "external LLM server (Ollama or OpenAI-compatible); default: the embedded one")  # fmt: skip
    llm_api: str = setting("openai", "wire format of --llm-url: SSE /v1/chat/completions or NDJSON /api/chat", choices=("openai", "ollama"))  # fmt: skip
    llm_model: str = setting("smollm2", "model name sent to the LLM server")
    llm_api_key: str | None = setting(None, "bearer key for the LLM server (or env OPENAI_API_KEY)")
    llm_max_tokens: int = setting(160, "longest reply in tokens: spoken replies are short; this bounds a runaway one", minimum=1)  # fmt: skip
    # Greedy: SmolLM2-135M sampled at 0.3 drifted into French and loops ("Le Grand Paris is the capital of
    # France"); at 0 with the repeat penalty below it answers plainly (table in BENCHMARKS.md).
    llm_temperature: float = setting(0.0, "sampling temperature sent with each request", minimum=0.0, maximum=2.0)  # fmt: skip
    llm_first_token_timeout: float = setting(10.0, "seconds from request to the LLM's first token", above=0)
    llm_stall_timeout: float = setting(10.0, "seconds the LLM may go quiet between two tokens", above=0)
    system_prompt: str = setting(DEFAULT_SYSTEM_PROMPT, "the system prompt of every new session")
    # Embedded llama-server: 4 slots with continuous batching. One thread: with two, on 2 cores shared
    # with whisper and Piper, llama.cpp's threads wait on each other (measured 1-5 tok/s vs 60-80 tok/s).
    llama_parallel: int = setting(4, "embedded LLM: requests served at once (slots)", minimum=1)
    llama_threads: int = setting(1, "embedded LLM: CPU threads", minimum=1)
    llama_ctx_per_slot: int = setting(2048, "embedded LLM: context tokens per slot", minimum=256)
    # The embedded server's default repeat penalty (over its last 64 tokens): 1.1 ended SmolLM2's loops on
    # everyday questions where 1.0 looped on two of ten; requests do not send it, so external servers keep theirs.
    llama_repeat_penalty: float = setting(1.1, "embedded LLM: repeat penalty", minimum=0.0)
    llama_ready_timeout: float = setting(120.0, "embedded LLM: seconds to wait for it to start", above=0)
    llama_restart_backoff: tuple[float, float] = setting((0.5, 10.0), "first and longest delay between restarts", cli=False)  # fmt: skip

    # --- phrases ----------------------------------------------------------------------------------
    phrase_max_wait: float = setting(2.0, "seconds since a phrase's first token before it is spoken anyway", above=0)  # fmt: skip
    phrase_max_tokens: int = setting(50, "tokens after which a phrase is spoken anyway", minimum=1)
    first_phrase_min_words: int = setting(3, "words after which the first phrase may close at a comma + connector", minimum=1)  # fmt: skip
    first_phrase_max_tokens: int = setting(20, "tokens after which the first phrase is spoken anyway", minimum=1)  # fmt: skip
    phrase_min_words: int = setting(6, "words after which later phrases may close at a comma + connector", minimum=1)  # fmt: skip

    # --- TTS --------------------------------------------------------------------------------------
    tts_workers: int = setting(3, "phrases synthesized at once per reply", minimum=1)
    tts_instances: int = setting(1, "Piper model instances shared by all sessions", minimum=1)
    tts_threads: int = setting(1, "onnxruntime threads per Piper instance (1 measured fastest for short phrases)", minimum=1)  # fmt: skip
    tts_model: tuple[Path, ...] = setting((), "a Piper .onnx voice (its .onnx.json beside it) installed beside en_US-joe-medium; repeatable (env: comma-separated)", converter=_paths)  # fmt: skip
    default_voice: str | None = setting(None, "the voice of new sessions (default: the first --tts-model, else en_US-joe-medium)")  # fmt: skip
    audio_buffer: int = setting(8, "audio events buffered between the sequencer and the socket", minimum=1)
    # TTS cache (trio_voice.tts_cache): 16 MiB is ~6 minutes of 22050 Hz speech, hundreds of phrases.
    tts_cache_mb: float = setting(16.0, "memory for synthesized short phrases, in MiB; 0 disables", minimum=0)
    tts_cache_max_chars: int = setting(100, "longer phrases are never cached", minimum=1)
    tts_cache_warmup: tuple[str, ...] = setting((), "a file of phrases to synthesize into the TTS cache at start-up, one per line ('#' starts a comment)", reader=lambda path: read_phrases_file(path), converter=tuple)  # fmt: skip

    lessons_dir: Path | None = setting(None, "a folder of lessons for narrate {lesson_id}: ID.txt, UTF-8", converter=_optional_path)  # fmt: skip

    # --- STT and VAD ------------------------------------------------------------------------------
    stt_model: Path | None = setting(None, "a whisper.cpp ggml model (default tiny.en; a multilingual one enables other languages: see `trio-voice prepare --multilingual`)", converter=_optional_path)  # fmt: skip
    language: str = setting("en", "language of new sessions: a code such as 'de', or 'auto' to detect it (both need a multilingual --stt-model)")  # fmt: skip
    # One whisper.cpp thread: ggml's threads spin-wait on each other, and with two threads on 2 cores shared
    # with the LLM and Piper, one busy core made a 2 s clip take 2-10 s instead of 0.2 s (measured).
    stt_threads: int = setting(1, "whisper.cpp threads", minimum=1)
    partial_interval: float = setting(0.5, "seconds of new speech between transcript.partial events", above=0)  # fmt: skip
    vad_threshold: float = setting(0.5, "speech probability above which audio counts as speech", minimum=0.0, maximum=1.0)  # fmt: skip
    # The energy gate in front of Silero (trio_voice.vad): chunks quieter than this skip the model.
    vad_gate_dbfs: float = setting(-70.0, "input quieter than this (chunk RMS, dBFS) for 256 ms skips the VAD model; -200 turns the gate off", minimum=-200.0, maximum=0.0)  # fmt: skip
    vad_silence_ms: int = setting(500, "silence that ends a user turn, in ms", minimum=0, maximum=10_000)
    vad_prefix_ms: int = setting(300, "audio kept before speech start, in ms", minimum=0, maximum=2_000)
    input_sample_rate: int = setting(16000, "default input audio rate of a session", minimum=8000, maximum=48000)  # fmt: skip
    max_queued_transcriptions: int = setting(4, "finals and transcribe clips a session may have waiting for the recognizer", minimum=1)  # fmt: skip
    # Semantic turn detection (turn_detection "semantic"): the end-of-turn model judges each pause of
    # turn_pause_ms; the turn ends when it is sure enough (eagerness) or after turn_fallback_ms of silence.
    # 700 ms outlasts the mid-sentence pauses (300-600 ms) the voice benchmark reads.
    turn_eagerness: str = setting("auto", "semantic turn detection: how soon a pause ends a turn", choices=("low", "medium", "high", "auto"))  # fmt: skip
    turn_fallback_ms: int = setting(700, "semantic turn detection: silence that ends a turn whatever the model says, in ms", minimum=300, maximum=10_000)  # fmt: skip
    turn_pause_ms: int = setting(200, "semantic turn detection: silence after which the model judges the pause, in ms", minimum=64, maximum=1000)  # fmt: skip
    turn_speculative: bool = setting(True, "semantic turn detection: start the reply at a pause, held until the turn is confirmed")  # fmt: skip
    # 128 ms, ahead of the 200 ms model check: the reply's transcription (~130 ms) is the long pole after
    # a turn's end, and starting it earlier puts it ahead of the verdict instead of behind it.
    turn_speculate_ms: int = setting(128, "semantic turn detection: silence after which a speculative reply starts, in ms", minimum=32, maximum=1000)  # fmt: skip
    # The echo guard (trio_voice.echo): speech detection ignores microphone audio that is the reply's own
    # echo (a speaker-phone), judged against the reply audio sent; ~0.5 ms per chunk while a reply plays.
    echo_guard: bool = setting(True, "ignore the reply's own echo in the microphone when detecting speech")
    # The Smart Turn end-of-turn model (turn_detection "semantic"). One onnxruntime thread: a call is ~30 ms
    # of CPU on these machines, and a second thread would compete with whisper.cpp and Piper for the core.
    turn_model_threads: int = setting(1, "onnxruntime threads of the Smart Turn end-of-turn model", minimum=1)

    # --- limits (protocol/limits.md) ------------------------------------------------------------------
    max_frame_bytes: int = setting(2**20, "largest WebSocket frame, in bytes (1 MiB, as trio-websocket's default)", minimum=1024)  # fmt: skip
    max_text_chars: int = setting(4000, "longest message.create / speak text or instructions", minimum=1)
    max_narration_chars: int = setting(100_000, "longest narrate text (or stored lesson)", minimum=1)
    max_queued_narrations: int = setting(8, "narrations a session may have queued or paused at once", minimum=1)  # fmt: skip
    max_sessions: int = setting(100, "open sessions per server", minimum=1)
    # Load-aware admission (trio_voice.admission): 1 s of queueing for a model is past what a voice
    # reply can absorb (the budget from end of speech to first audio is ~1.2 s).
    admission_queue_wait_ms: float = setting(1000.0, "new sessions are refused (server_full, 1013) while model calls wait longer than this for their turn (p90 over 10 s); 0 disables", minimum=0)  # fmt: skip
    idle_timeout: float = setting(300.0, "seconds without any client frame before the session is closed", above=0)  # fmt: skip
    max_audio_realtime_factor: float = setting(3.0, "input audio faster than this times real time is refused", above=0)  # fmt: skip
    max_messages_per_second: float = setting(50.0, "JSON messages per second per session (burst of the same)", above=0)  # fmt: skip

    # --- auth -------------------------------------------------------------------------------------
    tokens: tuple[str, ...] = setting((), "require this bearer token (repeatable; env: comma-separated)", flag="--token", converter=tuple)  # fmt: skip
    allowed_origins: tuple[str, ...] = setting((), "allowed WebSocket Origin (repeatable; env: comma-separated)", flag="--allowed-origin", converter=tuple)  # fmt: skip
    heartbeat_interval: float = setting(20.0, "seconds between WebSocket pings; 0 disables", minimum=0)
    shutdown_grace: float = setting(10.0, "seconds running replies may finish on SIGTERM", minimum=0)

    # --- sessions beyond one connection: resume, users, offline messages, pause, recording (issue 13) ------
    # 60 s covers a phone switching networks or a laptop waking up; a reply keeps running meanwhile.
    resume_ttl: float = setting(60.0, "seconds a session waits for its client to resume after the connection drops; 0 ends it at once", minimum=0)  # fmt: skip
    # 1 MiB holds ~17 s of reply audio (base64 JSON): far more than a dropped socket ever swallows.
    replay_buffer_events: int = setting(1024, "events a session keeps for a resume", minimum=16)
    replay_buffer_bytes: int = setting(2**20, "bytes of events a session keeps for a resume", minimum=65536)
    pause_buffer_events: int = setting(512, "events a paused reply may make before its generation waits", minimum=1)  # fmt: skip
    pause_buffer_bytes: int = setting(4 * 2**20, "bytes (of audio and text) a paused reply may make before its generation waits", minimum=1024)  # fmt: skip
    typing_timeout: float = setting(5.0, "seconds after typing.start that typing ends by itself", above=0)
    user_tokens: tuple[str, ...] = setting((), "USER=TOKEN: a bearer token that also names its user (repeatable; env: comma-separated)", flag="--user-token", converter=tuple)  # fmt: skip
    offline_ttl: float = setting(86400.0, "seconds an offline message waits for its user before it is dropped", above=0)  # fmt: skip
    offline_max_queued: int = setting(100, "undelivered offline messages per user", minimum=1)
    offline_sweep_interval: float = setting(60.0, "seconds between sweeps that drop expired offline messages", above=0)  # fmt: skip
    recording: str = setting("allowed", "whether clients may record their sessions (session.update record)", choices=("allowed", "forbidden"))  # fmt: skip
    recording_dir: Path | None = setting(None, "where recordings go (default DATA_DIR/recordings)", converter=_optional_path)  # fmt: skip
    recording_max_mb: float = setting(1024.0, "disk all recordings may use together, in MiB", minimum=0)

    # --- fake engines (serve --fake-engines: load tests, protocol tests) ----------------------------
    fake_llm_token_delay: float = setting(0.0, "with --fake-engines: seconds between the fake LLM's tokens, so replies last long enough to interrupt", minimum=0)  # fmt: skip

    # --- logging ----------------------------------------------------------------------------------
    log_format: str = setting("text", "log line format", choices=("text", "json"))
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            _check_bounds(field, getattr(self, field.name))
        if self.first_phrase_max_tokens > self.phrase_max_tokens:
            raise ConfigError(
                f"first_phrase_max_tokens ({self.first_phrase_max_tokens}) must not exceed "
                f"phrase_max_tokens ({self.phrase_max_tokens})"
            )
        for entry in self.user_tokens:
            user, sep, token = entry.partition("=")
            if not sep or not user.strip() or not token.strip():
                raise ConfigError(f"user_tokens entries are USER=TOKEN, not {entry!r}")
        if self.instance_id is not None and not INSTANCE_ID.fullmatch(self.instance_id):
            raise ConfigError(
                f"instance_id must be 1-64 letters, digits, '.', '_' or '-', not {self.instance_id!r}"
            )
        first, longest = self.llama_restart_backoff
        if not 0 < first <= longest:
            raise ConfigError(
                f"llama_restart_backoff must be 0 < first <= longest, not {self.llama_restart_backoff}"
            )

    @property
    def database(self) -> Path:
        return self.db_path if self.db_path is not None else self.data_dir / "conversations.sqlite3"

    @property
    def recordings(self) -> Path:
        return self.recording_dir if self.recording_dir is not None else self.data_dir / "recordings"

    @property
    def store_location(self) -> str | Path:
        """What ``storage.open_store`` opens: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.database_url or self.database


def _check_bounds(field: attrs.Attribute[Any], value: Any) -> None:
    meta = field.metadata
    if not meta or value is None or isinstance(value, (tuple, Path)):
        return
    name = field.name
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{name} must be one of {', '.join(meta['choices'])}, not {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, not {value!r}")
        if meta["minimum"] is not None and value < meta["minimum"]:
            raise ConfigError(f"{name} must be at least {meta['minimum']:g}, not {value!r}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            raise ConfigError(f"{name} must be at most {meta['maximum']:g}, not {value!r}")
        if meta["above"] is not None and value <= meta["above"]:
            raise ConfigError(f"{name} must be more than {meta['above']:g}, not {value!r}")

    @property
    def store_location(self) -> str | Path:
        """What ``storage.open_store`` opens: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.database_url or self.database
