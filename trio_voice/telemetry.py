"""Server telemetry: Prometheus metrics (via prometheus-client) and the recent-turn window behind /v1/stats.

One ``Telemetry`` per server, holding its own ``CollectorRegistry`` (no global registry), built at
start-up and passed to every session.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .admission import RecentWaits
from .codec.codes import ReplyStatus

# Latency buckets in seconds, dense where a conversation lives (0.2-2 s).
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# How many recent turns /v1/stats looks at, and how far back.
RECENT_TURNS = 200
RECENT_WINDOW_S = 300.0


@attrs.frozen(kw_only=True)
class HealthThresholds:
    """Defaults: error rate under 10 % and first audio under 2 s is healthy; over 20 % or 5 s is critical."""

    warning_error_rate: float = 0.10
    critical_error_rate: float = 0.20
    warning_first_audio_ms: float = 2000.0
    critical_first_audio_ms: float = 5000.0
    min_turns: int = 3  # fewer recent turns than this: "unknown"


class Telemetry:
    """Counts and times what the server does; renders Prometheus text; judges recent health."""

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.registry = CollectorRegistry()
        self.recent_waits = RecentWaits()
        r = self.registry
        self.sessions_open = Gauge("trio_voice_sessions_open", "Sessions connected now", registry=r)
        self.sessions_total = Counter("trio_voice_sessions", "Sessions opened", registry=r)
        self.turns = Counter("trio_voice_turns", "Replies by final status", ["status", "reason"], registry=r)
        self.errors = Counter("trio_voice_errors", "Error events sent, by code", ["code"], registry=r)
        self.latency = {
            name: Histogram(f"trio_voice_{name}_seconds", help_, buckets=LATENCY_BUCKETS, registry=r)
            for name, help_ in {
                "llm_first_token": "Request to first LLM token",
                "first_phrase": "Request to first phrase ready for TTS",
                "first_audio": "Request to first audio byte sent",
                "voice_to_voice": "End of user speech to first reply audio sent",
                "interruption": "Start of barge-in speech to the last byte of the cancelled reply",
                "stt_final": "End of user speech to final transcript",
            }.items()
        }
        self.turn_ends = Counter(
            "trio_voice_turn_ends",
            "Spoken turns ended, by what ended them: the end-of-turn model, the fallback silence, the fixed "
            "silence of server_vad, or by hand (commit, an utterance grown too long)",
            ["reason"],
            registry=r,
        )
        self.speculative = Counter(
            "trio_voice_speculative_replies",
            "Speculative replies (transcribed at a pause, before the turn was over): started, then used as "
            "the turn's reply or abandoned because the user went on (the rest held no words)",
            ["outcome"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "trio_voice_engine_queue_wait_seconds",
            "Time a model call waited for its engine's capacity limiter",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.resumes = Counter(
            "trio_voice_session_resumes",
            "session.resume attempts by outcome: resumed, or the resume_failed reason",
            ["outcome"],
            registry=r,
        )
        self.sessions_ended = Counter(
            "trio_voice_sessions_ended",
            "Sessions ended, by why: closed (client, idle, shutdown, error) or expired (never resumed)",
            ["how"],
            registry=r,
        )
        self.offline = Counter(
            "trio_voice_offline_messages",
            "Offline messages by event: queued, delivered (acknowledged), expired (dropped undelivered)",
            ["event"],
            registry=r,
        )
        self.llm_restarts = Gauge(
            "trio_voice_llm_child_restarts", "Restarts of the embedded LLM server", registry=r
        )
        self._recent: deque[tuple[float, str, float | None]] = deque(maxlen=RECENT_TURNS)
        self._llm_restarts_source: Callable[[], int] | None = None

    # --- recording --------------------------------------------------------------------------------
    def session_opened(self) -> None:
        self.sessions_open.inc()
        self.sessions_total.inc()

    def session_closed(self) -> None:
        self.sessions_open.dec()

    def resume(self, outcome: str) -> None:
        self.resumes.labels(outcome=outcome).inc()

    def session_ended(self, how: str) -> None:
        self.sessions_ended.labels(how=how).inc()

    def offline_message(self, event: str, count: int = 1) -> None:
        self.offline.labels(event=event).inc(count)

    def error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def turn_done(self, status: str, reason: str | None, metrics: Mapping[str, Any]) -> None:
        self.turns.labels(status=status, reason=reason or "").inc()
        for name, key in (
            ("llm_first_token", "llm_first_token_ms"),
            ("first_phrase", "first_phrase_ms"),
            ("first_audio", "first_audio_ms"),
            ("voice_to_voice", "voice_to_voice_ms"),
            ("interruption", "interruption_ms"),
            ("stt_final", "speech_end_to_final_ms"),
        ):
            value = metrics.get(key)
            if value is not None:
                self.latency[name].observe(value / 1000.0)
        self._recent.append((time.monotonic(), status, metrics.get("first_audio_ms")))

    def turn_end(self, reason: str) -> None:
        self.turn_ends.labels(reason=reason).inc()

    def speculation(self, outcome: str) -> None:
        """A speculative reply was ``started``, ``used`` as the turn's reply, or ``abandoned`` unsent."""
        self.speculative.labels(outcome=outcome).inc()

    def observe_queue_wait(self, engine: str, seconds: float) -> None:
        self.queue_wait.labels(engine=engine).observe(seconds)
        self.recent_waits.observe(seconds)  # what admission judges load by (trio_voice.admission)

    def watch_llm_restarts(self, source: Callable[[], int]) -> None:
        self._llm_restarts_source = source

    def watch_tts_cache(self, source: Callable[[], Any]) -> None:
        """Export a TTS cache's ``statistics()`` (``trio_voice.tts_cache``), read at every scrape."""
        self.registry.register(_TTSCacheCollector(source))

    # --- reading ----------------------------------------------------------------------------------
    def render(self) -> bytes:
        if self._llm_restarts_source is not None:
            self.llm_restarts.set(self._llm_restarts_source())
        return generate_latest(self.registry)

    def stats(self) -> dict[str, Any]:
        """Recent error rate and first-audio latency, and the health level they make."""
        horizon = time.monotonic() - RECENT_WINDOW_S
        recent = [t for t in self._recent if t[0] >= horizon]
        failed = sum(1 for _, status, _ in recent if status == ReplyStatus.FAILED)
        audio = sorted(ms for _, status, ms in recent if ms is not None and status == ReplyStatus.COMPLETED)
        error_rate = failed / len(recent) if recent else None
        p50 = audio[len(audio) // 2] if audio else None
        p95 = audio[min(len(audio) - 1, int(len(audio) * 0.95))] if audio else None
        return {
            "health": self._health(len(recent), error_rate, p95),
            "window_s": RECENT_WINDOW_S,
            "turns": len(recent),
            "error_rate": error_rate,
            "first_audio_ms_p50": p50,
            "first_audio_ms_p95": p95,
            "sessions_open": int(self.sessions_open._value.get()),
        }

    def _health(self, turns: int, error_rate: float | None, p95_ms: float | None) -> str:
        t = self.thresholds
        if turns < t.min_turns or error_rate is None:
            return "unknown"
        latency = p95_ms if p95_ms is not None else 0.0
        if error_rate > t.critical_error_rate or latency > t.critical_first_audio_ms:
            return "critical"
        if error_rate >= t.warning_error_rate or latency >= t.warning_first_audio_ms:
            return "warning"
        return "healthy"


class _TTSCacheCollector(Collector):
    """The TTS cache's own counts, as Prometheus metrics: the cache is their one source."""

    def __init__(self, source: Callable[[], Any]) -> None:
        self._source = source

    def collect(self) -> Any:
        stats = self._source()
        for name, help_, value in (
            ("hits", "TTS cache lookups answered from the cache", stats.hits),
            ("misses", "TTS cache lookups that synthesized (cacheable phrases only)", stats.misses),
            ("evictions", "TTS cache entries evicted to make room", stats.evictions),
        ):
            yield CounterMetricFamily(f"trio_voice_tts_cache_{name}", help_, value=value)
        yield GaugeMetricFamily(
            "trio_voice_tts_cache_bytes", "PCM bytes held by the TTS cache", value=stats.bytes
        )
        yield GaugeMetricFamily(
            "trio_voice_tts_cache_entries", "Phrases held by the TTS cache", value=stats.entries
        )
