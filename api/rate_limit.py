"""Per-key sliding-window rate limits for the web chat (a session, a client address).

In memory and per process, bounded: the oldest keys are forgotten beyond ``max_keys``, so a flood of new
sessions or addresses cannot grow memory without limit. Time comes from the injected clock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta


class RateLimiter:
    """At most ``limit`` hits per key within ``window``; ``hit`` says whether one more is allowed."""

    def __init__(self, limit: int, window: timedelta, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: datetime) -> bool:
        """Record a hit of ``key`` at ``now`` if allowed; False (and nothing recorded) when over the limit."""
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and now - hits[0] >= self.window:
                hits.popleft()
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            self._hits[key] = hits  # most recently used last
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            return allowed

    def retry_after(self, key: str, now: datetime) -> int:
        """Seconds until ``key`` may hit again (at least 1)."""
        with self._lock:
            hits = self._hits.get(key)
            if not hits:
                return 1
            return max(1, int((hits[0] + self.window - now).total_seconds()) + 1)
