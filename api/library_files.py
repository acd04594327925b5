"""The library's catalogue files — 素材/话术 (materials), coupon campaigns, groups and the tag taxonomy — edited through
the API without a restart, versioned and audited like SOPs.

A new text is checked as the whole library would be with it (a removed material an SOP still sends is a problem
at its line), stored as the published version of that file, and swapped into the running catalogue; every other
process applies it at its next library poll (api/library_sync.py).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from api.tables import LibraryFileVersion
from knowledge.clock import as_utc
from sop_graphs.loader import CATALOG_FILES, SHOP_FILES, Library, Problem, load_catalog
from sop_graphs.spec import Catalog
from sop_graphs.validator import validate

if TYPE_CHECKING:
    from agent.runtime import Runtime

EDITABLE = tuple(CATALOG_FILES)  # materials.yaml, campaigns.yaml, groups.yaml, tags.yaml
_F = LibraryFileVersion.__table__.c


def published(conn: Connection) -> dict[str, tuple[int, str]]:
    """The published text of each edited catalogue file: name -> (version, text)."""
    return {r.name: (r.version, r.source) for r in conn.execute(
        select(_F.name, _F.version, _F.source).where(_F.status == "published"))}


def current_text(engine: Engine, library_dir: Path, name: str) -> str:
    with engine.connect() as conn:
        text = published(conn).get(name)
    if text is not None:
        return text[1]
    path = library_dir / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def catalog_with(library_dir: Path, texts: dict[str, str]) -> tuple[Catalog, list[Problem]]:
    """The catalogue of ``library_dir`` with some of its files replaced by ``texts`` (problems point at them)."""
    scratch = Path(tempfile.mkdtemp(prefix="sopagent-catalog-"))
    try:
        for name in (*CATALOG_FILES, *SHOP_FILES):
            source = library_dir / name
            if name in texts:
                (scratch / name).write_text(texts[name], encoding="utf-8")
            elif source.is_file():
                shutil.copyfile(source, scratch / name)
        catalog, problems = load_catalog(scratch)
        return catalog, [Problem(p.file.replace(str(scratch), str(library_dir)), p.line, p.where, p.reason)
                         for p in problems]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check(library: Library, library_dir: Path, others: dict[str, str], name: str,
          text: str) -> tuple[Catalog, list[Problem]]:
    """The catalogue with ``name`` set to ``text`` (and the other published edits), and every problem the library
    would have with it."""
    catalog, problems = catalog_with(library_dir, {**others, name: text})
    if problems:
        return catalog, problems
    return catalog, validate(Library(sops=library.sops, catalog=catalog, sources=library.sources))


def save(conn: Connection, name: str, text: str, *, actor: str, at: datetime) -> int:
    """Store ``text`` as the published version of ``name`` (the previous one retired); its version number."""
    version = (conn.execute(select(func.max(_F.version)).where(_F.name == name)).scalar() or 0) + 1
    conn.execute(update(LibraryFileVersion.__table__).where(_F.name == name, _F.status == "published")
                 .values(status="retired"))
    conn.execute(LibraryFileVersion.__table__.insert().values(name=name, version=version, source=text,
                                                              status="published", created_at=as_utc(at),
                                                              created_by=actor))
    return version


def apply(runtime: Runtime, catalog: Catalog) -> None:
    """Swap the running catalogue (the caller holds the pump's lock): sends, coupons, invites and tag writes read
    it from the library; the router and brains keep a reference, which moves too."""
    runtime.deps.library.catalog = catalog
    conversation = runtime.conversation
    if conversation is not None:
        for holder in (conversation.router, conversation.fallback, conversation.brain,
                       getattr(conversation.brain, "inner", None)):
            if holder is not None and hasattr(holder, "catalog"):
                holder.catalog = catalog


def versions(engine: Engine, name: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(_F.version, _F.status, _F.created_at, _F.created_by).where(_F.name == name)
                            .order_by(_F.version)).mappings().all()
    return [dict(r) for r in rows]
