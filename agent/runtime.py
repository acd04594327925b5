"""The composed service: settings, stores, clock, channel, SOP engine and inbound processing.

``Runtime.build`` wires the embedded defaults; everything is injectable for tests, evals and the
demo. ``run_until`` drives a simulated clock from one due moment to the next, persisting it so a
restarted worker continues where the killed one stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy import select
from sqlalchemy.engine import Engine

import agent.tables  # noqa: F401  (registers tables)
import knowledge.tables  # noqa: F401
import sop_graphs.tables  # noqa: F401
from agent.brain import Brain
from agent.conversation import Conversation
from agent.inbound import InboundProcessor
from agent.offline_brain import OfflineBrain
from agent.prefetch import MemoBrain
from knowledge.clock import Clock, SimClock, as_utc
from knowledge.db import init_db, make_engine
from knowledge.embeddings import E5Embedder, Embedder, HashingEmbedder
from knowledge.importer import import_demo_shop
from knowledge.retriever import Retriever
from knowledge.settings import Settings
from sop_graphs.channel import Channel, SandboxChannel
from sop_graphs.deps import Deps
from sop_graphs.loader import Library, SopSource, load_library
from sop_graphs.runner import GraphRunner, checkpointer_for
from sop_graphs.spec import SopSpec
from sop_graphs.tables import WorkerState
from sop_graphs.validator import validate


class LibraryInvalid(ValueError):
    """The SOP library has validation problems; the runtime refuses to start on it."""


def load_valid_library(path: Path) -> Library:
    library, problems = load_library([path], path)
    problems += validate(library)
    if problems:
        raise LibraryInvalid("SOP library is invalid:\n" + "\n".join(str(p) for p in problems))
    return library


class Runtime:
    """Everything a worker, the demo or a test needs, built once."""

    def __init__(self, deps: Deps, checkpointer: BaseCheckpointSaver, conversation: Conversation | None = None) -> None:
        from sop_graphs.worker import Worker

        self.deps = deps
        self.runner = GraphRunner(deps, checkpointer)
        self.worker = Worker(deps, self.runner)
        self.conversation = conversation
        self.inbound = InboundProcessor(deps, conversation)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock, channel: Channel | None = None,
              library: Library | None = None, engine: Engine | None = None,
              checkpointer: BaseCheckpointSaver | None = None, brain: Brain | None = None,
              embedder: Embedder | None = None, llm_http: httpx.Client | None = None) -> Runtime:
        engine = engine or make_engine(settings.db_url, settings.sqlite_cache_mib)
        init_db(engine)
        deps = Deps(settings=settings, engine=engine, clock=clock,
                    library=library or load_valid_library(settings.library_path),
                    channel=channel or SandboxChannel(settings.sandbox_path))
        embedder = embedder or (E5Embedder() if settings.embedder == "e5" else HashingEmbedder())
        retriever = Retriever(engine, settings.chroma_url or settings.chroma_path, embedder)
        offline = OfflineBrain(deps.library.catalog, embedder)
        if brain is None and settings.brain == "llm":
            from agent.llm_brain import LLMBrain  # langchain-openai is only imported when configured

            brain = LLMBrain(settings, http_client=llm_http, catalog=deps.library.catalog)
        brain = brain or offline
        if brain is not offline:  # model calls are prefetched off the write path (agent/prefetch.py)
            brain = MemoBrain(brain)
        conversation = Conversation(deps, brain, offline, retriever, embedder)
        runtime = cls(deps, checkpointer or checkpointer_for(settings.db_url, settings.checkpoint_path,
                                                               settings.sqlite_cache_mib),
                      conversation)
        runtime.worker.bootstrap()
        return runtime

    def replace_sop(self, spec: SopSpec, source: SopSource) -> None:
        """Run ``spec`` from now on (an operator published or paused it): compile once, swap it in.

        Runs already under way keep their thread; steps the new version no longer has are cancelled
        when they come due rather than sent.
        """
        library = self.deps.library
        library.sops[spec.id] = spec
        library.sources[spec.id] = source
        library.__dict__.pop("tag_listeners", None)
        self.runner.replace(spec)
        self.worker.refresh(spec.id)

    def tick(self, deadline: float | None = None, shard: int | None = None,
             guard: Callable[[], None] | None = None) -> int:
        """Process everything due at the clock's now (of one customer shard, if given), until nothing more is due now.
        ``guard`` is called before each batch is written and raises to stop (the shard's claim is gone).

        Without a ``deadline`` (a simulation, the CLI) the tick also waits for the model calls of drafted turns
        (agent/prefetch.py). With one (``time.monotonic()``; the service's pump) it returns at the deadline or
        when nothing is ready, never waiting for a model: the pump is woken when a draft is done."""
        total = 0
        while True:
            done = (self.inbound.process(deadline, shard, guard) + self.worker.process_due(shard, guard)
                    + self.worker.dispatch_outbox(shard, guard))
            total += done
            if deadline is not None and time.monotonic() >= deadline:
                return total
            if done == 0:
                if deadline is None and self.inbound.drafting():
                    self.inbound.drafts.wait_any()  # type: ignore[union-attr]
                    continue
                return total

    def next_wakeup(self) -> datetime | None:
        times = [t for t in (self.inbound.next_at(), self.worker.next_due()) if t is not None]
        return min(times) if times else None

    def run_until(self, until: datetime, *, persist_as: str | None = None,
                  resolution: timedelta = timedelta(seconds=1), tick: Callable[[], int] | None = None) -> int:
        """Advance a simulated clock to ``until``, processing due moments in order.

        Like a polling worker, the clock moves in whole ``resolution`` steps: everything due within
        one step is handled together, at most ``resolution`` late. ``tick`` does the work of one moment
        (default :meth:`tick`; api/simulation.py waits for worker processes instead).
        """
        tick = tick or self.tick
        clock = self.deps.clock
        if not isinstance(clock, SimClock):
            raise TypeError("run_until needs a simulated clock")
        until = as_utc(until)
        if until < clock.now():
            raise ValueError(f"simulated clock cannot go back from {clock.now().isoformat()} to {until.isoformat()}")
        total = 0
        while True:
            total += tick()
            nxt = self.next_wakeup()
            if nxt is None or nxt > until:
                if clock.now() < until:
                    clock.set(until)
                    self._persist(persist_as)
                    total += tick()
                return total
            if nxt > clock.now():
                step = resolution.total_seconds()
                rounded = datetime.fromtimestamp(math.ceil(nxt.timestamp() / step) * step, tz=UTC)
                clock.set(min(max(rounded, nxt), until))
                self._persist(persist_as)
            else:  # something reported due but nothing was processable: never spin on the same instant
                clock.set(min(clock.now() + resolution, until))

    def _persist(self, name: str | None) -> None:
        if name is None:
            return
        with self.deps.engine.begin() as conn:
            table = WorkerState.__table__
            conn.execute(table.delete().where(table.c.name == name))
            conn.execute(table.insert().values(name=name, value=self.deps.clock.now().isoformat()))

    def load_demo_shop(self) -> None:
        """Import the bundled demo shop if the catalogue is empty, then index it for retrieval."""
        with self.deps.engine.connect() as conn:
            empty = conn.execute(select(knowledge.tables.Product.__table__.c.sku).limit(1)).first() is None
        if empty:
            import_demo_shop(self.deps.engine, self.deps.settings.shop_timezone, self.deps.settings.shop_path)
        if self.conversation is not None and self.conversation.retriever is not None:
            self.conversation.retriever.sync()

    def saved_clock(self, name: str) -> datetime | None:
        with self.deps.engine.connect() as conn:
            value = conn.execute(select(WorkerState.__table__.c.value)
                                 .where(WorkerState.__table__.c.name == name)).scalar()
        return datetime.fromisoformat(value) if value else None
