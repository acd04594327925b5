"""One pump per database: a lease row with holder, heartbeat and expiry.

``sopagent serve`` pumps in-process and ``sopagent worker`` pumps on its own; run both on one database
and two pumps would answer the same message twice. Each pump pass first takes or renews the lease (one
short conditional UPDATE, at most every third of its term); a pump that cannot stands by, says who holds it, and takes over once the
holder stops renewing (crashed or stopped) and the lease expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine

from api.tables import PumpLease
from knowledge.clock import Clock, as_utc
from knowledge.db import insert_ignore

NAME = "pump"


_L = PumpLease.__table__.c


def holder_id() -> str:
    """This process: host, pid and a random suffix (a restarted process is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    """Take, renew and release the pump lease of ``engine`` for ``holder``, on ``clock``."""

    def __init__(self, engine: Engine, clock: Clock, ttl: timedelta, holder: str | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.ttl = ttl
        self.holder = holder or holder_id()
        self._renewed_at: datetime | None = None

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours (and renew it); False when another holds it.
        A lease renewed less than a third of its term ago is not written again (passes may come every few ms)."""
        now = as_utc(self.clock.now())
        if self._renewed_at is not None and timedelta(0) <= now - self._renewed_at < self.ttl / 3:
            return True
        self._renewed_at = None
        values = {"holder": self.holder, "expires_at": now + self.ttl, "heartbeat_at": now}
        with self.engine.begin() as conn:
            taken = conn.execute(update(PumpLease.__table__).where(
                _L.name == NAME, or_(_L.holder == self.holder, _L.expires_at < now)).values(**values)).rowcount
            if taken or insert_ignore(conn, PumpLease.__table__, [{"name": NAME, **values}]) == 1:
                self._renewed_at = now
                return True
            return False

    def current(self) -> tuple[str, datetime] | None:
        """The holder and expiry of the lease, if anyone ever took it."""
        with self.engine.connect() as conn:
            row = conn.execute(select(_L.holder, _L.expires_at).where(_L.name == NAME)).first()
        return (row.holder, as_utc(row.expires_at)) if row else None

    def release(self) -> None:
        """Give the lease up at once (a clean stop): a standing-by pump takes over on its next pass."""
        self._renewed_at = None
        with self.engine.begin() as conn:
            conn.execute(update(PumpLease.__table__).where(_L.name == NAME, _L.holder == self.holder)
                         .values(expires_at=as_utc(self.clock.now()) - timedelta(seconds=1)))
