"""A circuit breaker for the LLM endpoint, on the injected clock.

closed → (``threshold`` consecutive failures) → open: callers use the offline brain without calling
the endpoint → (``cooldown`` elapsed) → half-open: exactly one probe call is let through; its success
closes the circuit, its failure opens it again for another cool-down. An *outage* runs from the first
failure of a streak to the next success; :meth:`CircuitBreaker.claim_incident` answers True once per
outage, so one review task is opened for it however many turns fall back during it.

Thread-safe: turns of different customers run concurrently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from knowledge.clock import Clock


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    """A snapshot for health and metrics."""

    state: CircuitState
    consecutive_failures: int
    opened_at: datetime | None
    last_error: str | None
    opened_total: int  # times the circuit opened (including re-opens after a failed probe)
    short_circuited_total: int  # calls refused while open: the offline brain answered without a call

    @property
    def healthy(self) -> bool:
        return self.state is CircuitState.CLOSED


class CircuitBreaker:
    """Counts consecutive failures of one dependency and decides whether the next call may go out."""

    def __init__(self, clock: Clock, *, threshold: int, cooldown: timedelta) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at: datetime | None = None
        self._probe_at: datetime | None = None
        self._last_error: str | None = None
        self._incident_claimed = False
        self._opened_total = 0
        self._short_circuited = 0

    def allow(self) -> bool:
        """May a call go out now? While open, no; after the cool-down, one probe at a time."""
        with self._lock:
            now = self.clock.now()
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.OPEN and self._opened_at is not None \
                    and now - self._opened_at >= self.cooldown:
                self._state, self._probe_at = CircuitState.HALF_OPEN, now
                return True
            if self._state is CircuitState.HALF_OPEN and self._probe_at is not None \
                    and now - self._probe_at >= self.cooldown:
                self._probe_at = now  # the probe never reported back (its turn was abandoned): probe again
                return True
            self._short_circuited += 1
            return False

    def record_success(self) -> None:
        """The endpoint answered: the circuit closes and the outage, if any, is over."""
        with self._lock:
            self._state, self._failures = CircuitState.CLOSED, 0
            self._opened_at = self._probe_at = None
            self._incident_claimed = False

    def record_failure(self, reason: str) -> None:
        """The endpoint failed after its retry policy; a failed probe or the ``threshold``-th failure opens."""
        with self._lock:
            self._failures += 1
            self._last_error = reason
            if self._state is CircuitState.HALF_OPEN or (self._state is CircuitState.CLOSED
                                                        and self._failures >= self.threshold):
                self._state, self._opened_at, self._probe_at = CircuitState.OPEN, self.clock.now(), None
                self._opened_total += 1

    def claim_incident(self) -> bool:
        """True for the first caller during an outage (it opens the one review task), False afterwards."""
        with self._lock:
            if self._failures == 0 or self._incident_claimed:
                return False
            self._incident_claimed = True
            return True

    def status(self) -> BreakerStatus:
        with self._lock:
            state = self._state
            if state is CircuitState.OPEN and self._opened_at is not None \
                    and self.clock.now() - self._opened_at >= self.cooldown:
                state = CircuitState.HALF_OPEN  # the next call will be the probe
            return BreakerStatus(state=state, consecutive_failures=self._failures, opened_at=self._opened_at,
                                 last_error=self._last_error, opened_total=self._opened_total,
                                 short_circuited_total=self._short_circuited)
