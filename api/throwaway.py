"""A throwaway copy of the shop for the editor's test-run and the console's chat simulator.

Its own SQLite file, checkpointer, Chroma directory and sandbox channel in a temporary directory, a simulated
clock and the offline brain; the shop's catalogue knowledge (products, FAQ and policy, promotions, status labels
and cached embeddings) is copied in, so answers are the shop's answers. Nothing reaches a real customer and no
customer data is copied. Closing it removes the directory."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, Table, select

from agent.runtime import Runtime
from knowledge.clock import SimClock, as_utc
from knowledge.embeddings import Embedder
from knowledge.settings import Settings
from knowledge.tables import Document, EmbeddingCache, Product, Promotion, StatusLabel
from sop_graphs.channel import SandboxChannel
from sop_graphs.loader import Library

KNOWLEDGE: tuple[Table, ...] = tuple(t.__table__ for t in (Product, Document, Promotion, StatusLabel,  # type: ignore[misc]
                                                            EmbeddingCache))
_CHUNK = 1000


def copy_knowledge(source: Engine, target: Engine) -> int:
    """Copy the catalogue tables, a chunk at a time; returns the rows copied."""
    copied = 0
    for table in KNOWLEDGE:
        with source.connect() as reader, target.begin() as writer:
            result = reader.execution_options(yield_per=_CHUNK).execute(select(table))
            for chunk in result.mappings().partitions(_CHUNK):
                writer.execute(table.insert(), [dict(r) for r in chunk])
                copied += len(chunk)
    return copied


class ThrowawayShop:
    """A runtime over a copy of the shop's knowledge; use as a context manager or call :meth:`close`."""

    def __init__(self, settings: Settings, library: Library, source: Engine, *, start: datetime,
                 embedder: Embedder | None = None, prefix: str = "sopagent-throwaway-") -> None:
        self.home = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            models = settings.home / "models"
            if models.is_dir():  # the intent classifier trained for this shop: reused, not retrained
                (self.home / "models").symlink_to(models.resolve(), target_is_directory=True)
            trial = Settings(**{**settings.model_dump(), "home": self.home, "database_url": None, "chroma_url": None, "brain": "offline"})
            self.clock = SimClock(as_utc(start))
            self.runtime = Runtime.build(trial, clock=self.clock, library=library, embedder=embedder,
                                         channel=SandboxChannel(self.home / "sandbox.sqlite"))
            copy_knowledge(source, self.runtime.deps.engine)
        except BaseException:
            shutil.rmtree(self.home, ignore_errors=True)
            raise

    def close(self) -> None:
        self.runtime.deps.engine.dispose()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> ThrowawayShop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
