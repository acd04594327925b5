"""The running service behind the HTTP app: runtime, WeCom client and channel, callback store, pump.

Requests never do the work themselves. A verified callback is written by :class:`CallbackStore`
(group commit: many callbacks per SQLite transaction, each request acknowledged once its row is
durable) and the pump thread is woken; the pump applies callbacks, runs the runtime's tick (inbound
turns, due touchpoints, outbox) and polls mass-send tasks. On SQLite one pump per database (the lease); on
PostgreSQL any number, each working the customer shards it claims (knowledge/shards.py).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

import api.tables  # noqa: F401  (registers tables)
from agent.runtime import Runtime
from agent.tables import InboundEvent
from api.lease import Lease
from api.library_sync import apply_published, library_digest
from api.metrics import Metrics
from api.tables import WecomCallback
from api.wecom.channel import WeComChannel
from api.wecom.client import WeComClient
from api.wecom.crypto import WeComCrypto
from api.wecom.inbound import CallbackProcessor
from knowledge.clock import Clock, SystemClock, as_utc
from knowledge.db import init_db, insert_ignore, make_engine
from knowledge.settings import Settings
from knowledge.shards import ShardClaims, shard_of
from sop_graphs.tables import DueTouchpoint, Outbox

log = logging.getLogger("sopagent.service")
POLL_MASS_EVERY = 60.0
REPORT_RETRY_SECONDS = 900
QUEUES = ((InboundEvent.__table__.name, "received_at"), (DueTouchpoint.__table__.name, "due_at"),
          (Outbox.__table__.name, "not_before"))  # the sharded work: (table, time column)
PASS_GAP_SECONDS = 0.002  # between back-to-back pump passes: a thread waiting on the pump lock gets it


@dataclass
class _Pending:
    row: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class CallbackStore:
    """Durable, batched writes of verified callbacks; duplicates (WeCom retries) are ignored by key."""

    def __init__(self, engine: Engine, on_stored: Any, max_batch: int = 500) -> None:
        self.engine = engine
        self.on_stored = on_stored
        self.max_batch = max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="callback-writer", daemon=True)
        self._thread.start()

    async def store(self, row: dict[str, Any]) -> None:
        """Return once ``row`` is committed (or raise if the write failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(row, loop, future))
        await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            error: BaseException | None = None
            try:
                with self.engine.begin() as conn:
                    insert_ignore(conn, WecomCallback.__table__, [p.row for p in batch])
            except Exception as exc:  # the requests answer 503 and WeCom retries
                log.exception("storing %d callbacks failed", len(batch))
                error = exc
            for p in batch:
                p.loop.call_soon_threadsafe(_resolve, p.future, error)
            if error is None:
                self.on_stored()


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def inbox_engine(settings: Settings, main: Engine) -> Engine:
    """Where verified callbacks are stored. On SQLite a file of its own, so acknowledging a callback
    never waits for the pump's write transactions on the main database; elsewhere the main database."""
    if not settings.db_url.startswith("sqlite"):
        return main
    engine = make_engine(f"sqlite:///{settings.home / 'inbox.sqlite'}", settings.sqlite_cache_mib)
    WecomCallback.__table__.create(engine, checkfirst=True)
    return engine


class Service:
    """Everything ``sopagent serve`` runs; built once per process (or per test)."""

    def __init__(self, settings: Settings, runtime: Runtime, client: WeComClient | None,
                 crypto: WeComCrypto | None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.client = client
        self.crypto = crypto
        self.clock: Clock = runtime.deps.clock
        self.metrics = Metrics()
        self.inbox = inbox_engine(settings, runtime.deps.engine)
        self.processor = CallbackProcessor(runtime.deps, client, self.inbox)
        self.store = CallbackStore(self.inbox, self.wake)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_poll = 0.0
        self._thread: threading.Thread | None = None
        self.lease = Lease(runtime.deps.engine, self.clock, timedelta(seconds=settings.pump_lease_seconds))
        # PostgreSQL: any number of pumps, each working on the customer shards it claims (knowledge/shards.py);
        # SQLite: one pump per database, the lease's holder
        self.claims = ShardClaims(runtime.deps.engine) if runtime.deps.engine.dialect.name == "postgresql" else None
        self.standing_by: str | None = None  # why this process is not pumping (another holds the lease)
        self.paused_applied: set[str] = set()  # SOPs this process paused because the database says so
        self._library_digest: str | None = None
        self._last_library_poll = float("-inf")
        self._reporting: threading.Thread | None = None
        self._reported_day: date | None = None
        self._report_retry_at = float("-inf")
        if runtime.inbound.drafts is not None:  # a finished draft wakes the pump to write its turn
            runtime.inbound.drafts.on_done = self.wake

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None,
              wecom_transport: httpx.BaseTransport | None = None, **runtime_kwargs: Any) -> Service:
        clock = clock or SystemClock()
        engine = make_engine(settings.db_url, settings.sqlite_cache_mib)
        init_db(engine)
        client, channel = None, None
        if settings.use_wecom:
            client = WeComClient(settings, transport=wecom_transport)
            channel = WeComChannel(settings, engine, client, clock)
        runtime = Runtime.build(settings, clock=clock, engine=engine, channel=channel, **runtime_kwargs)
        crypto = None
        if settings.wecom_token and settings.wecom_aes_key and settings.wecom_corp_id:
            crypto = WeComCrypto(settings.wecom_token.get_secret_value(), settings.wecom_aes_key.get_secret_value(),
                                 settings.wecom_corp_id)
        return cls(settings, runtime, client, crypto)

    # ------------------------------------------------------------------ pump

    def wake(self) -> None:
        self._wake.set()

    def pump_once(self, budget: float | None = None) -> int:
        """Apply callbacks, run everything due, poll mass sends; returns how many items were handled. On SQLite a
        process that does not hold the pump lease stands by (0): one pump per database; on PostgreSQL every pump
        works the customer shards no other holds. With a ``budget`` (seconds; the pump loop's) the pass stops
        writing turns then and never waits for a model; without one it runs until nothing is due (and waits for
        drafted model calls)."""
        if self.claims is None and not self.lease.acquire():
            holder = self.lease.current()
            why = (f"another pump ({holder[0]}) holds the lease until {holder[1].isoformat(timespec='seconds')}; "
                   "standing by") if holder else "the pump lease is taken; standing by"
            if why != self.standing_by:
                log.warning(why)
            self.standing_by = why
            return 0
        self.standing_by = None
        self.sync_library()
        deadline = None if budget is None else time.monotonic() + budget
        with self._lock:
            # on PostgreSQL the chores one pump does for the database: WeCom callbacks (applied in the order they
            # came: a contact's add, edit and delete), mass-send polls and the daily report
            duties = self.claims is None or self.claims.duties()
            handled = self.processor.process() if duties else 0
            if self.claims is None:
                handled += self.runtime.tick(deadline=deadline)
            else:
                handled += self._tick_shards(deadline)
            if duties:
                channel = self.runtime.deps.channel
                if isinstance(channel, WeComChannel) and time.monotonic() - self._last_poll >= POLL_MASS_EVERY:
                    self._last_poll = time.monotonic()
                    channel.poll()
            self.metrics.collect(self)
        if duties:
            self._maybe_report()
        return handled

    def _tick_shards(self, deadline: float | None) -> int:
        """One pass over the customer shards: each one no other pump holds is claimed, worked until nothing in it
        is due now (or the deadline), and released."""
        assert self.claims is not None
        handled = 0
        while True:  # without a deadline, until a whole rotation finds nothing (one shard's work may add to another)
            done = 0
            for shard in self.claims.busy(QUEUES, as_utc(self.clock.now())):
                with self.claims.claimed(shard, keep=self._drafting_in) as mine:
                    if mine:
                        done += self.runtime.tick(deadline=deadline, shard=shard, guard=self.claims.check)
                self.claims.worked(shard)
                if deadline is not None and time.monotonic() >= deadline:
                    return handled + done
            handled += done
            if deadline is not None or done == 0:
                return handled

    def _drafting_in(self, shard: int) -> bool:
        """Whether a turn of ``shard`` is being drafted here (its model calls): the pump keeps the shard meanwhile."""
        drafts = self.runtime.inbound.drafts
        return drafts is not None and any(shard_of(cid) == shard for cid in drafts.customers())

    def _maybe_report(self) -> None:
        """Yesterday's review report once the shop's report time has passed (api/report), made on its own thread
        so the pump goes on; the stored report row makes it once per day whatever restarts."""
        from api.report import daily

        if not self.settings.report_enabled or (self._reporting is not None and self._reporting.is_alive()):
            return
        day = daily.due_day(self.settings, self.clock.now())
        if day is None or day == self._reported_day or time.monotonic() < self._report_retry_at:
            return
        self._reported_day = day
        runtime = self.runtime
        brain = runtime.conversation.brain if runtime.conversation is not None else None

        def make() -> None:
            try:
                ctx = daily.context(self.settings, runtime.deps.engine, runtime.deps.library,
                                    embedder=runtime.conversation.embedder if runtime.conversation else None,
                                    writer=brain if brain is not None and brain.name != "offline"
                                    and runtime.conversation.breaker.status().healthy else None)
                daily.run_daily(self.settings, ctx, runtime.deps.channel, self.clock.now())
            except Exception:  # a report that fails is retried a while later; it never stops the pump
                log.exception("daily report for %s failed; retrying in %d s", day, REPORT_RETRY_SECONDS)
                self._report_retry_at = time.monotonic() + REPORT_RETRY_SECONDS
                self._reported_day = None

        self._reporting = threading.Thread(target=make, name="daily-report", daemon=True)
        self._reporting.start()

    def sync_library(self, force: bool = False) -> bool:
        """Apply SOPs published, paused or resumed by any process since the last look (every
        ``library_poll_seconds``); True when something changed."""
        if not force and time.monotonic() - self._last_library_poll < self.settings.library_poll_seconds:
            return False
        self._last_library_poll = time.monotonic()
        with self.runtime.deps.engine.connect() as conn:
            digest = library_digest(conn)
        if digest == self._library_digest:
            return False
        self._library_digest = apply_published(self)
        return True

    def start(self, interval: float = 1.0) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    handled = self.pump_once(self.settings.pump_pass_seconds)
                except Exception:  # keep serving; the failed work stays pending and is retried
                    log.exception("pump pass failed")
                    handled = 0
                if not handled:
                    self._wake.wait(interval)
                    self._wake.clear()
                else:  # the pass stopped at its deadline: let waiting operator actions take the lock first
                    time.sleep(PASS_GAP_SECONDS)

        self._thread = threading.Thread(target=loop, name="pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.lease.release()
        if self.claims is not None:
            self.claims.close()
        if self.runtime.inbound.drafts is not None:
            self.runtime.inbound.drafts.close()
        self.store.close()
        if self.client is not None:
            self.client.close()

    # ------------------------------------------------------------------ readiness

    def queue_depth(self) -> dict[str, int]:
        now = as_utc(self.clock.now())
        with self.inbox.connect() as conn:
            callbacks = conn.execute(select(func.count()).select_from(WecomCallback.__table__)
                                     .where(WecomCallback.__table__.c.status == "pending")).scalar() or 0
        with self.runtime.deps.engine.connect() as conn:
            due = conn.execute(select(func.count()).select_from(DueTouchpoint.__table__).where(
                DueTouchpoint.__table__.c.status == "pending", DueTouchpoint.__table__.c.due_at <= now)).scalar() or 0
            outbox = conn.execute(select(func.count()).select_from(Outbox.__table__).where(
                Outbox.__table__.c.status == "pending", Outbox.__table__.c.not_before <= now)).scalar() or 0
        return {"callbacks": callbacks, "due": due, "outbox": outbox}
