"""Rate limits as token buckets: pure arithmetic on timestamps the caller supplies (sans-I/O)."""

from __future__ import annotations

import attrs


@attrs.define
class TokenBucket:
    """Allows ``rate`` units per second with bursts up to ``burst``; ``take`` says whether ``amount`` fits now."""

    rate: float
    burst: float
    _level: float | None = None
    _last: float = 0.0

    def take(self, now: float, amount: float = 1.0) -> bool:
        if self._level is None:
            self._level = self.burst
        else:
            self._level = min(self.burst, self._level + (now - self._last) * self.rate)
        self._last = now
        if amount > self._level:
            return False
        self._level -= amount
        return True
