"""Library changes made through the API reach every process: the published versions and pauses live in the
database, and each pump compares their digest every few seconds and applies a change (a ``worker`` beside
``serve --no-worker`` sees a publish or a pause within seconds, not at its next restart)."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Connection

from api import library_files
from api.tables import LibraryFileVersion, SopVersion
from sop_graphs.loader import load_sop_text
from sop_graphs.tables import WorkerState

if TYPE_CHECKING:
    from api.service import Service

_V = SopVersion.__table__.c
_W = WorkerState.__table__.c
_F = LibraryFileVersion.__table__.c
log = logging.getLogger("sopagent.library")


def _state(conn: Connection) -> tuple[list[tuple[str, int, str]], set[str]]:
    published = [(r.sop_id, r.version, r.source) for r in conn.execute(
        select(_V.sop_id, _V.version, _V.source).where(_V.status == "published").order_by(_V.sop_id))]
    return published, _paused(conn)


def _paused(conn: Connection) -> set[str]:
    return {name.split("/", 1)[1] for name in conn.execute(select(_W.name).where(_W.name.like("sop_paused/%")))
            .scalars()}


def library_digest(conn: Connection) -> str:
    """What the operators changed: published (SOP, version) pairs, paused SOPs and published catalogue files
    (polled: no text read)."""
    published = conn.execute(select(_V.sop_id, _V.version).where(_V.status == "published").order_by(_V.sop_id))
    files = conn.execute(select(_F.name, _F.version).where(_F.status == "published").order_by(_F.name))
    text = "\n".join(f"{sop_id}@{version}" for sop_id, version in published) + "|" + ",".join(sorted(_paused(conn))) \
        + "|" + ",".join(f"{name}@{version}" for name, version in files)
    return hashlib.sha256(text.encode()).hexdigest()


def apply_published(service: Service) -> str:
    """Run the published operator versions and honour pauses and resumes; returns the digest applied."""
    runtime = service.runtime
    with runtime.deps.engine.connect() as conn:
        published, paused = _state(conn)
        digest = library_digest(conn)
        files = {name: text for name, (_, text) in library_files.published(conn).items()}
    catalog = None
    if files:  # catalogue edits made through the API (by any process)
        catalog, problems = library_files.catalog_with(service.settings.library_path, files)
        if problems:
            log.warning("published catalogue files do not load; keeping the running catalogue: %s", problems[:3])
            catalog = None
    with service._lock:
        if catalog is not None:
            library_files.apply(runtime, catalog)
        for sop_id, _, text in published:
            spec, source, problems = load_sop_text(text, f"{sop_id}.yaml", sop_id)
            if spec is not None and not problems:
                runtime.replace_sop(spec, source)
        library = runtime.deps.library
        for sop_id in paused | service.paused_applied:
            spec = library.sops.get(sop_id)
            if spec is not None and spec.enabled == (sop_id in paused):  # pause it, or resume one we paused
                runtime.replace_sop(spec.model_copy(update={"enabled": sop_id not in paused}),
                                    library.sources[sop_id])
        service.paused_applied = set(paused)
    return digest
