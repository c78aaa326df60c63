"""A TTS cache: synthesized audio of short phrases kept in memory, bounded in bytes, least recently used out.

Voice replies repeat themselves: openings ("Sure!"), fillers ("Let me think."), the answer to a common
question. :class:`CachedTTS` wraps any engine with the ``TTS`` protocol (``trio_voice.engines``) and is
one itself, so sessions and the HTTP endpoints use it unchanged. A hit hands its audio to ``on_audio``
at once, without a thread, a checkpoint or the Piper limiter; a miss synthesizes through the wrapped
engine, passing its audio on as it comes, and keeps it when the phrase completes.

What is cached: phrases of at most ``max_chars`` characters (longer text passes straight through),
keyed by (voice, text with Unicode NFC and runs of white space made one space, sample rate): case and
punctuation stay in the key, as they change how a phrase is spoken. An entry is the list of PCM chunks
as the engine gave them (one per sentence); its size is their bytes. Entries over ``max_bytes`` are not
kept; otherwise the least recently used ones are evicted until the new one fits.

Concurrency: concurrent misses of the same phrase synthesize it once: the first caller synthesizes,
the others wait for it and are then served from the cache (as hits). If the first caller fails or is
cancelled (a barge-in), nothing is stored and one of the waiting callers synthesizes in its place.

Several voices: :meth:`CachedTTS.for_voice` wraps another voice's engine in a cache that shares this one's
entries, bound and counts (the voice is part of every key), so one ``--tts-cache-mb`` bounds them all.

Counting: :meth:`CachedTTS.statistics` is the one record of hits, misses and evictions; Prometheus
reads it at each scrape (``Telemetry.watch_tts_cache``). Warm-up syntheses are not counted as misses.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import attrs
import trio

from .engines import TTS

__all__ = ["CacheStatistics", "CachedTTS", "normalize_text"]

logger = logging.getLogger(__name__)

# Phrases up to this long are cached: an opening or a short answer ("Sure, I can help with that.").
DEFAULT_MAX_CHARS = 100

CacheKey = tuple[str, str, int]


@attrs.frozen(kw_only=True)
class CacheStatistics:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


def normalize_text(text: str) -> str:
    """The text as the cache keys it: NFC, trimmed, each run of white space one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


async def _discard(chunk: bytes) -> None:
    pass


@attrs.define
class _Store:
    """What the caches of several voices share: the entries, their bytes, flights and counts."""

    entries: OrderedDict[CacheKey, tuple[bytes, ...]] = attrs.field(factory=OrderedDict)  # oldest use first
    bytes: int = 0
    flights: dict[CacheKey, trio.Event] = attrs.field(factory=dict)  # phrases being synthesized now
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class CachedTTS:
    """A TTS engine in front of ``inner`` that remembers the audio of short phrases (see the module doc).

    Args:
      inner: the engine that synthesizes misses (a ``Synthesizer`` or a fake).
      max_bytes: the bound on cached PCM bytes (``0`` stores nothing).
      max_chars: phrases longer than this (after normalising) are never cached.
      voice: the name of ``inner``'s voice, part of every key.
    """

    def __init__(
        self,
        inner: TTS,
        *,
        max_bytes: int,
        max_chars: int = DEFAULT_MAX_CHARS,
        voice: str = "default",
        _store: _Store | None = None,
    ) -> None:
        if max_bytes < 0 or max_chars < 1:
            raise ValueError("max_bytes must be >= 0 and max_chars >= 1")
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.voice = voice
        self._store = _store if _store is not None else _Store()

    def for_voice(self, inner: TTS, voice: str) -> CachedTTS:
        """A cache in front of another voice's engine, sharing this one's entries, bound and counts."""
        return CachedTTS(
            inner, max_bytes=self.max_bytes, max_chars=self.max_chars, voice=voice, _store=self._store
        )

    def statistics(self) -> CacheStatistics:
        """Hits, misses and evictions of every voice sharing this cache."""
        store = self._store
        return CacheStatistics(
            entries=len(store.entries),
            bytes=store.bytes,
            max_bytes=self.max_bytes,
            hits=store.hits,
            misses=store.misses,
            evictions=store.evictions,
        )

    def key(self, text: str) -> CacheKey | None:
        """The cache key of ``text``, or None when it is not cacheable (empty or too long)."""
        normal = normalize_text(text)
        if not normal or len(normal) > self.max_chars:
            return None
        return (self.voice, normal, self.sample_rate)

    async def synthesize(self, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        """Like the wrapped engine's: ``text``'s audio to ``on_audio``, from the cache when it can.

        Raises:
          SynthesisError: the wrapped engine failed (nothing is stored).

        Cancellation: as the wrapped engine's on a miss; a hit is cancelled only where ``on_audio`` is.
        """
        key = self.key(text)
        if key is None:
            await self.inner.synthesize(text, on_audio)
            return
        store = self._store
        while True:
            chunks = store.entries.get(key)
            if chunks is not None:
                store.entries.move_to_end(key)
                store.hits += 1
                for chunk in chunks:
                    await on_audio(chunk)
                return
            flight = store.flights.get(key)
            if flight is None:
                break
            await flight.wait()  # the same phrase is being synthesized: use its audio when it is done
        store.misses += 1
        await self._fill(key, text, on_audio)

    async def warm(self, phrases: Iterable[str]) -> int:
        """Synthesize ``phrases`` into the cache (start-up); returns how many are cached afterwards.

        Phrases that cannot be cached (too long, empty) are skipped with a warning. Not counted as misses.
        """
        for phrase in phrases:
            key = self.key(phrase)
            if key is None:
                logger.warning(
                    "TTS cache warm-up: %r is not cacheable (over %d chars)", phrase, self.max_chars
                )
            elif key not in self._store.entries and key not in self._store.flights:
                await self._fill(key, phrase, _discard)
        return len(self._store.entries)

    async def _fill(self, key: CacheKey, text: str, on_audio: Callable[[bytes], Awaitable[None]]) -> None:
        """Synthesize through the wrapped engine, passing audio on, and store it once all of it came."""
        done = self._store.flights[key] = trio.Event()
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            chunks.append(chunk)
            await on_audio(chunk)

        try:
            await self.inner.synthesize(text, keep)
            self._keep(key, tuple(chunks))
        finally:
            del self._store.flights[key]
            done.set()

    def _keep(self, key: CacheKey, chunks: tuple[bytes, ...]) -> None:
        store = self._store
        size = sum(len(chunk) for chunk in chunks)
        if size > self.max_bytes:
            return
        while store.bytes + size > self.max_bytes:
            _, evicted = store.entries.popitem(last=False)
            store.bytes -= sum(len(chunk) for chunk in evicted)
            store.evictions += 1
        store.entries[key] = chunks
        store.bytes += size
