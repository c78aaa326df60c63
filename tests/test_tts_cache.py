"""The TTS cache: hits, misses, LRU eviction by bytes, single flight, warm-up, metrics and configuration."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import httpx
import pytest
import trio
import trio.testing

from tests.conftest import IO_TIMEOUT, run_server
from trio_voice.cli import build_parser, config_from_args
from trio_voice.config import Config
from trio_voice.errors import ConfigError, SynthesisError
from trio_voice.startup import Loaded, _voices
from trio_voice.telemetry import Telemetry
from trio_voice.testing import VOICE_HZ, FakeTTS, tone
from trio_voice.tts_cache import CachedTTS, normalize_text

RATE = 22050


def audio_of(text: str) -> bytes:
    """What FakeTTS says for ``text``: 60 ms of tone per character."""
    return tone(len(text) * 60.0 / 1000.0, RATE, VOICE_HZ)  # as FakeTTS computes it


@attrs.define
class Heard:
    """An ``on_audio`` that keeps what it is given."""

    chunks: list[bytes] = attrs.field(factory=list)

    async def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def audio(self) -> bytes:
        return b"".join(self.chunks)


@attrs.define
class LimitedTTS:
    """FakeTTS behind a CapacityLimiter, like the real Synthesizer's, so tests can hold the limiter."""

    inner: FakeTTS = attrs.field(factory=lambda: FakeTTS(delay=lambda text: 1.0))
    limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))
    sample_rate: int = RATE

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        async with self.limiter:
            await self.inner.synthesize(text, on_audio)


def cached(tts: object = None, **kwargs: object) -> CachedTTS:
    return CachedTTS(tts or FakeTTS(delay=lambda text: 1.0), **({"max_bytes": 10**6} | kwargs))  # type: ignore[arg-type]


# --- hits and misses ---------------------------------------------------------------------------------


async def test_a_miss_synthesizes_and_the_repeat_is_a_hit(autojump_clock: trio.abc.Clock) -> None:
    """The first time a phrase is synthesized (1 s); the second it comes from the cache, in no time."""
    tts = FakeTTS(delay=lambda text: 1.0)
    cache = cached(tts)
    first, second = Heard(), Heard()
    await cache.synthesize("Sure, I can help.", first)
    assert trio.current_time() == 1.0
    await cache.synthesize("Sure, I can help.", second)
    assert trio.current_time() == 1.0
    assert tts.started == ["Sure, I can help."]
    assert second.chunks == first.chunks == [audio_of("Sure, I can help.")]
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (1, 1, 1, len(first.audio))


async def test_a_hit_does_not_wait_for_the_synthesis_limiter(autojump_clock: trio.abc.Clock) -> None:
    """With Piper's limiter taken by a long synthesis, a cached phrase is still delivered at once."""
    tts = LimitedTTS()
    cache = cached(tts)
    await cache.synthesize("Hello.", Heard())
    heard = Heard()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.synthesize, "A long sentence nobody has said before.", Heard())
        await trio.testing.wait_all_tasks_blocked()
        assert tts.limiter.borrowed_tokens == 1
        started = trio.current_time()
        await cache.synthesize("Hello.", heard)
        assert trio.current_time() == started and heard.audio == audio_of("Hello.")


async def test_the_key_ignores_spacing_but_not_case_or_punctuation(autojump_clock: trio.abc.Clock) -> None:
    """White space is normalised; case and punctuation change how a phrase is spoken, so they count."""
    tts = FakeTTS()
    cache = cached(tts)
    for text in ("Hello there.", "  Hello\n there. ", "Hello there!", "hello there."):
        await cache.synthesize(text, Heard())
    assert tts.started == ["Hello there.", "Hello there!", "hello there."]
    assert normalize_text(" Cafe\u0301  au lait ") == "Café au lait"


async def test_long_text_passes_through_uncached(autojump_clock: trio.abc.Clock) -> None:
    """Text over ``max_chars`` is synthesized every time and counted neither as hit nor as miss."""
    tts = FakeTTS()
    cache = cached(tts, max_chars=20)
    text = "This sentence is longer than twenty characters."
    for _ in range(2):
        await cache.synthesize(text, Heard())
    assert tts.started == [text, text]
    assert (cache.statistics().hits, cache.statistics().misses, cache.statistics().entries) == (0, 0, 0)


async def test_nothing_to_say_is_cached_too(autojump_clock: trio.abc.Clock) -> None:
    """A phrase the engine gives no audio for is remembered as such: zero bytes, then hits."""
    tts = FakeTTS(ms_per_char=0.0)
    cache = cached(tts)
    for _ in range(2):
        heard = Heard()
        await cache.synthesize("...", heard)
        assert heard.audio == b""
    assert tts.started == ["..."]
    stats = cache.statistics()
    assert (stats.entries, stats.bytes, stats.hits) == (1, 0, 1)


# --- the byte bound and LRU --------------------------------------------------------------------------


async def test_eviction_keeps_the_cache_within_its_bytes(autojump_clock: trio.abc.Clock) -> None:
    """Room for two 10-character phrases: a third evicts the oldest, and the bytes stay in bound."""
    size = len(audio_of("0123456789"))
    cache = cached(FakeTTS(), max_bytes=2 * size + 10)
    for text in ("phrase 01.", "phrase 02.", "phrase 03."):
        await cache.synthesize(text, Heard())
    stats = cache.statistics()
    assert (stats.entries, stats.bytes, stats.evictions) == (2, 2 * size, 1)
    assert cache.key("phrase 01.") not in cache._store.entries


async def test_eviction_takes_the_least_recently_used(autojump_clock: trio.abc.Clock) -> None:
    """A, B cached; A used again; C evicts B, not A."""
    tts = FakeTTS()
    size = len(audio_of("0123456789"))
    cache = cached(tts, max_bytes=2 * size)
    for text in ("phrase A.", "phrase B.", "phrase A.", "phrase C.", "phrase A.", "phrase B."):
        await cache.synthesize(text.ljust(10), Heard())
    assert [t.strip() for t in tts.started] == ["phrase A.", "phrase B.", "phrase C.", "phrase B."]
    assert cache.statistics().hits == 2 and cache.statistics().evictions == 2


async def test_a_phrase_bigger_than_the_cache_is_not_kept(autojump_clock: trio.abc.Clock) -> None:
    """Audio larger than ``max_bytes`` is delivered but not stored, and evicts nothing."""
    cache = cached(FakeTTS(), max_bytes=len(audio_of("short.")))
    await cache.synthesize("short.", Heard())
    heard = Heard()
    await cache.synthesize("a longer phrase.", heard)
    assert heard.audio == audio_of("a longer phrase.")
    assert (cache.statistics().entries, cache.statistics().evictions) == (1, 0)


# --- concurrency -------------------------------------------------------------------------------------


async def test_concurrent_misses_synthesize_once(autojump_clock: trio.abc.Clock) -> None:
    """Three sessions asking for the same new phrase at once: one synthesis, three deliveries at t=1."""
    tts = FakeTTS(delay=lambda text: 1.0)
    cache = cached(tts)
    heard = [Heard() for _ in range(3)]
    finished = []

    async def ask(on_audio: Heard) -> None:
        await cache.synthesize("Good morning.", on_audio)
        finished.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for h in heard:
            nursery.start_soon(ask, h)
    assert tts.started == ["Good morning."] and finished == [1.0, 1.0, 1.0]
    assert all(h.audio == audio_of("Good morning.") for h in heard)
    assert (cache.statistics().misses, cache.statistics().hits) == (1, 2)


async def test_a_cancelled_first_caller_hands_over_to_a_waiting_one(autojump_clock: trio.abc.Clock) -> None:
    """The first caller is barged in on at 0.5 s: nothing is stored, the waiting caller synthesizes."""
    tts = FakeTTS(delay=lambda text: 1.0)
    cache = cached(tts)
    waiting = Heard()
    first_scope = trio.CancelScope()

    async def first() -> None:
        with first_scope:
            await cache.synthesize("Right away.", Heard())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(cache.synthesize, "Right away.", waiting)
        await trio.sleep(0.5)
        first_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert cache.statistics().entries == 0 and waiting.chunks == []
    assert trio.current_time() == 1.5 and waiting.audio == audio_of("Right away.")
    assert tts.started == ["Right away.", "Right away."] and tts.active == 0


@attrs.define
class FlakyTTS:
    """Fails its first ``failures`` syntheses after a second; then speaks like FakeTTS."""

    failures: int
    inner: FakeTTS = attrs.field(factory=FakeTTS)
    sample_rate: int = RATE

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        await trio.sleep(1.0)
        if self.failures:
            self.failures -= 1
            raise SynthesisError("voice broke")
        await self.inner.synthesize(text, on_audio)


async def test_a_failed_synthesis_is_not_cached_and_the_waiter_retries(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The first synthesis fails: its caller gets the error, the waiting one a fresh synthesis."""
    cache = cached(FlakyTTS(failures=1))  # type: ignore[arg-type]
    waiting, errors = Heard(), []

    async def first() -> None:
        try:
            await cache.synthesize("Okay.", Heard())
        except SynthesisError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(cache.synthesize, "Okay.", waiting)
    assert len(errors) == 1 and waiting.audio == audio_of("Okay.") and trio.current_time() == 2.0
    assert (cache.statistics().misses, cache.statistics().entries) == (2, 1)


# --- warm-up, metrics, configuration -----------------------------------------------------------------


async def test_warm_up_fills_the_cache_without_counting_misses(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Warm-up phrases are synthesized once at start; a too-long one is skipped with a warning."""
    tts = FakeTTS()
    cache = cached(tts, max_chars=30)
    with caplog.at_level(logging.WARNING, logger="trio_voice.tts_cache"):
        count = await cache.warm(["Hello!", "Let me think.", "Hello!", "x" * 31])
    assert count == 2 and tts.started == ["Hello!", "Let me think."]
    assert "not cacheable" in caplog.text
    await cache.synthesize("Let me think.", Heard())
    assert (cache.statistics().hits, cache.statistics().misses) == (1, 0)


def loaded(*voices: tuple[str, FakeTTS]) -> Loaded:
    return Loaded(voices=[(name, "en_US", tts) for name, tts in voices])


async def test_startup_wraps_the_voice_and_warms_it(autojump_clock: trio.abc.Clock) -> None:
    """Start-up puts the configured cache in front of the voice, warmed; 0 MiB leaves the voice bare."""
    tts, telemetry = FakeTTS(), Telemetry()
    config = Config(tts_cache_mb=1.0, tts_cache_warmup=("Hi there.",))
    engine = (await _voices(config, loaded(("en_US-joe-medium", tts)), telemetry)).default.tts
    assert isinstance(engine, CachedTTS) and engine.max_bytes == 2**20 and engine.voice == "en_US-joe-medium"
    assert engine.statistics().entries == 1 and tts.started == ["Hi there."]
    assert b"trio_voice_tts_cache_entries 1.0" in telemetry.render()
    bare = await _voices(Config(tts_cache_mb=0), loaded(("en_US-joe-medium", tts)), Telemetry())
    assert bare.default.tts is tts


async def test_voices_share_one_cache_keyed_by_voice(autojump_clock: trio.abc.Clock) -> None:
    """Two voices share the cache's bound and counts, and the same text in each is two entries."""
    joe, other = FakeTTS(), FakeTTS()
    book = await _voices(
        Config(tts_cache_mb=1.0, default_voice="joe"), loaded(("joe", joe), ("other", other)), Telemetry()
    )
    for voice in ("joe", "other", "joe", "other"):
        await book.get(voice).tts.synthesize("Sure!", Heard())
    assert joe.started == ["Sure!"] and other.started == ["Sure!"]
    stats = book.get("other").tts.statistics()  # type: ignore[attr-defined]
    assert (stats.entries, stats.hits, stats.misses) == (2, 2, 2)


def test_cache_options_on_the_command_line(tmp_path: Path) -> None:
    """--tts-cache-mb sets the size; --tts-cache-warmup reads phrases, one a line, without comments."""
    phrases = tmp_path / "openings.txt"
    phrases.write_text("# common openings\nSure!\n\n  Let me check.  \n", encoding="utf-8")
    args = build_parser().parse_args(["serve", "--tts-cache-mb", "4", "--tts-cache-warmup", str(phrases)])
    config = config_from_args(args)
    assert (config.tts_cache_mb, config.tts_cache_warmup) == (4.0, ("Sure!", "Let me check."))
    assert config_from_args(build_parser().parse_args(["serve"])).tts_cache_mb == Config().tts_cache_mb


def test_a_missing_warmup_file_stops_the_command(tmp_path: Path) -> None:
    """A warm-up file that cannot be read is an error at start, naming the file."""
    args = build_parser().parse_args(["serve", "--tts-cache-warmup", str(tmp_path / "nope.txt")])
    with pytest.raises(ConfigError, match=r"nope\.txt"):
        config_from_args(args)


async def test_hits_and_misses_show_in_metrics(tmp_path: Path) -> None:
    """Two identical /v1/audio/speech requests: one miss, one hit, both in /metrics."""
    cache = cached(FakeTTS())
    async with run_server(tmp_path, {"tts": cache}) as running:
        running.telemetry.watch_tts_cache(cache.statistics)
        async with httpx.AsyncClient(base_url=running.http_url, timeout=IO_TIMEOUT, trust_env=False) as http:
            answers = [await http.post("/v1/audio/speech", json={"input": "Hello there."}) for _ in range(2)]
            metrics = (await http.get("/metrics")).text
    assert answers[0].content == answers[1].content
    assert "trio_voice_tts_cache_hits_total 1.0" in metrics
    assert "trio_voice_tts_cache_misses_total 1.0" in metrics
    assert f"trio_voice_tts_cache_bytes {float(len(audio_of('Hello there.')))}" in metrics
