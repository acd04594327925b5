"""Customer shards: how several workers on one PostgreSQL share the work and keep each customer's order.

Every row of work that belongs to a customer (inbound turns, due touchpoints, outbox rows) carries the shard of
its customer, ``shard_of(customer_id)``: one of :data:`SHARDS`, from the customer id's MD5, so every process (and
SQL, in a migration) computes the same. A worker processes a shard only while it holds that shard's claim, a
session-level PostgreSQL advisory lock taken with ``pg_try_advisory_lock`` (never waited for: a shard another
worker holds is skipped, as ``FOR UPDATE SKIP LOCKED`` skips a locked row). A shard has one worker at a time, so
a customer's turns, touchpoints and sends run in order whatever the number of processes; a worker that dies
(SIGKILL included) loses its connection and with it its claims at once, and the next worker to reach the shard
replays the rows still pending, as a restarted single worker would (every effect is keyed).

Why shards and not row claims: a row claimed alone (``SKIP LOCKED``) can be the second of a customer's two due
rows while another worker still runs the first, so row claims need a per-customer lock on top; a shard lock is
that lock for 1/64 of the customers at once and lets the claim queries read one shard's rows in index order.

On SQLite there is one pump per database (see ``api/lease.py``) and no shard is claimed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field

SHARDS = 64  # fixed: every process must agree; a divisor of 256, so the MD5's first byte spreads evenly
DUTIES = SHARDS  # a claim beside the shards: the chores one pump does for the database (mass-send polls, reports)
LOCK_CLASS = 0x50A6  # the advisory lock namespace of shard claims (first key of the two-key form)


def shard_of(customer_id: str | None) -> int:
    """The shard of ``customer_id`` (rows with no customer — cron and sweep rows — are in the shard of '')."""
    return hashlib.md5((customer_id or "").encode(), usedforsecurity=False).digest()[0] % SHARDS


def shard_default(context: Any) -> int:
    """Column default: the shard of the row's ``customer_id`` (every insert path gets it, executemany included)."""
    return shard_of(context.get_current_parameters().get("customer_id"))


def shard_field() -> Any:
    """A table's ``shard`` column: set on insert from the row's ``customer_id``; nullable, so an embedded database
    made before it gains it in place (SQLite never reads it)."""
    return Field(default=None, sa_column_kwargs={"default": shard_default},
                 description="the customer's shard: which worker may process the row (PostgreSQL)")


class ClaimLost(RuntimeError):
    """The session holding this worker's shard claims is gone: another worker may hold them now."""


class ShardClaims:
    """One worker's claims on shards, held on a connection of its own (PostgreSQL only).

    :meth:`each` walks the shards from where the last walk stopped, claims each one it can for the time the caller
    works on it and releases it after, so N workers spread over the shards and none waits for another.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._next = 0
        self._duties = False
        self._kept: set[int] = set()  # shards still claimed after their pass (see ``claimed``)

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._duties = False  # a new session holds nothing
            self._kept.clear()
            self._conn = self.engine.connect()
            # the claims live as long as this session: no server-side idle timeout may end it
            self._conn.execute(text("SET idle_in_transaction_session_timeout = 0"))
            self._conn.execute(text("SET idle_session_timeout = 0"))
            self._conn.commit()
        return self._conn

    def check(self) -> None:
        """Raise unless this worker's claims still stand: a round trip on the session that holds them (a session
        alive holds its advisory locks; one that died — terminated, network lost — raises here). The worker checks
        before each batch it writes, so a worker whose claims went never works on beside their next holder."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            raise ClaimLost("this worker's claims were lost with their connection")
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
        except Exception as exc:
            self.close()
            raise ClaimLost("this worker's claims were lost with their connection") from exc

    def try_claim(self, shard: int) -> bool:
        conn = self._connection()
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:c, :s)"), {"c": LOCK_CLASS, "s": shard}).scalar())
        conn.commit()  # the lock is the session's, not the transaction's: nothing stays open while we work
        return got

    def release(self, shard: int) -> None:
        conn = self._connection()
        conn.execute(text("SELECT pg_advisory_unlock(:c, :s)"), {"c": LOCK_CLASS, "s": shard})
        conn.commit()

    def duties(self) -> bool:
        """Whether this worker does the once-per-database chores: the first to ask holds them until it stops."""
        if not self._duties or self._conn is None or self._conn.closed or self._conn.invalidated:
            self._duties = self.try_claim(DUTIES)
        return self._duties

    @contextmanager
    def claimed(self, shard: int, keep: Callable[[int], bool] | None = None) -> Iterator[bool]:
        """Hold ``shard`` for the block if no other worker does (yields False, and holds nothing, if one does).
        After the block the claim is released unless ``keep(shard)`` says this worker still has work in flight
        there (a turn's model calls): then it stays held, so no other worker starts the same work again."""
        if shard not in self._kept and not self.try_claim(shard):
            yield False
            return
        self._kept.discard(shard)
        try:
            yield True
        finally:
            if keep is not None and self._conn is not None and keep(shard):
                self._kept.add(shard)
            else:
                try:
                    self.release(shard)
                except Exception:  # the connection died: PostgreSQL already dropped its locks with it
                    self.close()

    def rotation(self) -> list[int]:
        """Every shard once, starting after the last one worked."""
        return [(self._next + i) % SHARDS for i in range(SHARDS)]

    def busy(self, queues: Sequence[tuple[str, str]], now: datetime) -> list[int]:
        """The shards with something pending at or before ``now`` in any of ``queues`` ((table, time column)
        pairs), from the one after the last worked (:meth:`worked`): one round trip of index probes, so a pass
        skips idle shards unclaimed, and a pass cut short by its deadline is continued where it stopped."""
        probes = " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE shard = s AND status = 'pending' AND {at} <= :now)"
                             for table, at in queues)
        conn = self._connection()
        found = {int(s) for s in conn.execute(text(f"SELECT s FROM generate_series(0, {SHARDS - 1}) AS s WHERE "
                                                   f"{probes}"), {"now": now}).scalars()}
        conn.commit()
        return [shard for shard in self.rotation() if shard in found]

    def worked(self, shard: int) -> None:
        """The next walk starts after ``shard``."""
        self._next = (shard + 1) % SHARDS

    def close(self) -> None:
        """Give back every claim (the pooled connection outlives this object: its session's locks must go)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.commit()
                self._conn.close()
            except Exception:  # noqa: BLE001 — a dead connection: PostgreSQL dropped its locks with it
                with contextlib.suppress(Exception):
                    self._conn.invalidate()
            self._conn = None
            self._duties = False
            self._kept.clear()
