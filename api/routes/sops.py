"""SOPs through the operator API: list, read, validate as you type, save numbered draft versions, publish,
pause and resume. Every change is audited; problems come back as data with line and column."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from api import audit
from api.bounds import INT64_MAX
from api.deps import EditorDep, OperatorDep, ServiceDep
from api.problems import ProblemOut, ValidationFailed, invalid, problems_out
from api.service import Service
from api.tables import SopVersion
from knowledge.clock import as_utc
from sop_graphs.enrolment import LIVE
from sop_graphs.loader import Problem, load_sop_file, load_sop_text, sop_files, with_sop
from sop_graphs.mermaid import to_mermaid
from sop_graphs.tables import SopRun, WorkerState
from sop_graphs.validator import validate

router = APIRouter(prefix="/api", tags=["sops"], responses={401: {"description": "operator token required"},
                                                          403: {"description": "the caller's role may not"}})
_R, _V = SopRun.__table__.c, SopVersion.__table__.c


SopStatus = Literal["running", "paused", "draft"]


class SopSummary(BaseModel):
    id: str
    name: str
    family: str
    version: int
    enabled: bool
    status: SopStatus = Field(description="running, paused, or draft (saved, never published)")
    live_runs: int = Field(description="runs under way (active or scheduled)")
    enrolled: int = Field(description="runs ever started")
    completed: int
    exited: int
    published_version: int | None = Field(description="operator version running, None = bundled library")
    latest_version: int | None = Field(default=None, description="the newest saved version, draft or not")
    library_file: bool = Field(default=False, description="the library has a file for it (version 0 exists)")


class SopDetail(SopSummary):
    spec: dict[str, Any]


class SopIn(BaseModel):
    yaml: str = Field(min_length=1, max_length=200_000, description="The whole SOP as YAML.")


class VersionOut(BaseModel):
    sop_id: str
    version: int
    status: str
    created_at: datetime
    created_by: str


class PublishIn(BaseModel):
    version: int = Field(ge=1, le=INT64_MAX)



def _spec_or_404(service: Service, sop_id: str) -> Any:
    spec = service.runtime.deps.library.sops.get(sop_id)
    if spec is None:
        raise HTTPException(404, f"unknown SOP {sop_id!r}")
    return spec


def _counts(conn: Any, sop_id: str | None = None) -> dict[str, dict[str, int]]:
    """Runs per SOP and status, in one grouped query."""
    query = select(_R.sop_id, _R.status, func.count()).group_by(_R.sop_id, _R.status)
    if sop_id is not None:
        query = query.where(_R.sop_id == sop_id)
    counts: dict[str, dict[str, int]] = {}
    for sid, status, n in conn.execute(query):
        counts.setdefault(sid, {})[status] = n
    return counts


def _versions(conn: Any, sop_id: str | None = None) -> dict[str, tuple[int | None, int]]:
    """(published version, newest version) per SOP with saved versions."""
    query = select(_V.sop_id, _V.version, _V.status)
    if sop_id is not None:
        query = query.where(_V.sop_id == sop_id)
    out: dict[str, tuple[int | None, int]] = {}
    for sid, version, status in conn.execute(query):
        published, latest = out.get(sid, (None, 0))
        out[sid] = (version if status == "published" else published, max(latest, version))
    return out


def library_ids(directory: Path) -> frozenset[str]:
    """The SOP ids the library directory has files for (parsed again only when a file changes)."""
    files = tuple((str(path), path.stat().st_mtime_ns) for path in sop_files([directory]))
    return _ids_in(files)


@lru_cache(maxsize=4)
def _ids_in(files: tuple[tuple[str, int], ...]) -> frozenset[str]:
    return frozenset(spec.id for path, _ in files if (spec := load_sop_file(Path(path))[0]) is not None)


def _row(spec: Any, counts: dict[str, int], versions: tuple[int | None, int] | None,
         in_library: frozenset[str] = frozenset()) -> dict[str, Any]:
    published, latest = versions or (None, None)
    return {"id": spec.id, "name": spec.name, "family": spec.family, "version": spec.version, "enabled": spec.enabled,
            "status": "running" if spec.enabled else "paused",
            "live_runs": sum(counts.get(s, 0) for s in LIVE), "enrolled": sum(counts.values()),
            "completed": counts.get("completed", 0), "exited": counts.get("exited", 0),
            "published_version": published, "latest_version": latest, "library_file": spec.id in in_library}


def _summary(service: Service, spec: Any) -> dict[str, Any]:
    with service.runtime.deps.engine.connect() as conn:
        counts, versions = _counts(conn, spec.id), _versions(conn, spec.id)
    return _row(spec, counts.get(spec.id, {}), versions.get(spec.id), library_ids(service.settings.library_path))


def _problems(service: Service, sop_id: str, text: str) -> tuple[Any, Any, list[Problem]]:
    """Parse ``text`` as SOP ``sop_id`` and check it against the running library, as saving does."""
    library = service.runtime.deps.library
    spec, source, problems = load_sop_text(text, f"{sop_id}.yaml", sop_id)
    if spec is not None and spec.id != sop_id:
        problems.append(Problem(source.file, source.line("id"), spec.id,
                                f"id {spec.id!r} does not match the URL's {sop_id!r}"))
    if spec is not None and not problems:
        problems = [p for p in validate(with_sop(library, spec, source)) if p.file == source.file]
    return spec, source, problems


@router.get("/sops", response_model=list[SopSummary])
def list_sops(service: ServiceDep, _: OperatorDep) -> list[dict[str, Any]]:
    """Every SOP the shop runs or has paused, and those saved as drafts but never published."""
    sops = service.runtime.deps.library.sops
    with service.runtime.deps.engine.connect() as conn:
        counts, versions = _counts(conn), _versions(conn)
        drafts = {sid for sid, (published, _) in versions.items() if sid not in sops and published is None}
        first: dict[str, str] = {}
        for sid, text in conn.execute(select(_V.sop_id, _V.source).where(_V.sop_id.in_(drafts))
                                      .order_by(_V.version.desc())):
            first.setdefault(sid, text)
    in_library = library_ids(service.settings.library_path)
    rows = [_row(spec, counts.get(spec.id, {}), versions.get(spec.id), in_library) for spec in sops.values()]
    for sid, text in first.items():
        spec, _, _ = load_sop_text(text, f"{sid}.yaml", sid)
        name, family = (spec.name, spec.family) if spec is not None else (sid, "?")
        rows.append({"id": sid, "name": name, "family": family, "version": spec.version if spec else 0,
                     "enabled": False, "status": "draft", "live_runs": 0, "enrolled": 0, "completed": 0, "exited": 0,
                     "published_version": None, "latest_version": versions[sid][1]})
    return sorted(rows, key=lambda r: r["id"])


@router.get("/sops/{sop_id}", response_model=SopDetail, responses={404: {"description": "unknown SOP"}})
def get_sop(sop_id: str, service: ServiceDep, _: OperatorDep) -> dict[str, Any]:
    spec = _spec_or_404(service, sop_id)
    return {**_summary(service, spec), "spec": spec.model_dump(mode="json", by_alias=True)}


@router.get("/sops/{sop_id}/graph", response_class=PlainTextResponse, responses={404: {"description": "unknown SOP"}})
def sop_graph(sop_id: str, service: ServiceDep, _: OperatorDep) -> str:
    return to_mermaid(_spec_or_404(service, sop_id))


@router.put("/sops/{sop_id}", response_model=VersionOut, status_code=201,
            responses={422: {"model": ValidationFailed, "description": "every validation problem, with its line"}})
def save_sop(sop_id: str, body: SopIn, service: ServiceDep, actor: EditorDep) -> Any:
    """Validate and save a new draft version (create or update); publish it separately."""
    _, _, problems = _problems(service, sop_id, body.yaml)
    if problems:
        return invalid(problems, body.yaml)
    now = as_utc(service.clock.now())
    with service.runtime.deps.engine.begin() as conn:
        version = (conn.execute(select(func.max(_V.version)).where(_V.sop_id == sop_id)).scalar() or 0) + 1
        conn.execute(SopVersion.__table__.insert().values(sop_id=sop_id, version=version, source=body.yaml,
                                                          status="draft", created_at=now, created_by=actor))
        audit.record(conn, at=now, actor=actor, action="sop.save", target=sop_id, detail={"version": version})
    return VersionOut(sop_id=sop_id, version=version, status="draft", created_at=now, created_by=actor)


class Checked(BaseModel):
    problems: list[ProblemOut]
    graph: str | None = Field(description="the draft's graph as Mermaid, when it parses")


@router.post("/sops/{sop_id}/validate", response_model=Checked)
def check_sop(sop_id: str, body: SopIn, service: ServiceDep, _: OperatorDep) -> Any:
    """Check a draft as the editor types (nothing saved): every problem with its line and column, and its graph."""
    spec, _, problems = _problems(service, sop_id, body.yaml)
    return Checked(problems=problems_out(problems, body.yaml), graph=to_mermaid(spec) if spec is not None else None)


@router.get("/sops/{sop_id}/versions", response_model=list[VersionOut])
def sop_versions(sop_id: str, service: ServiceDep, _: OperatorDep) -> list[dict[str, Any]]:
    with service.runtime.deps.engine.connect() as conn:
        rows = conn.execute(select(SopVersion.__table__).where(_V.sop_id == sop_id).order_by(_V.version)).mappings()
        return [dict(r) for r in rows]


@router.post("/sops/{sop_id}/publish", response_model=SopSummary,
             responses={404: {"description": "unknown version"}, 422: {"model": ValidationFailed}})
def publish_sop(sop_id: str, body: PublishIn, service: ServiceDep, actor: EditorDep) -> Any:
    """Run this version from now on; new enrolments use it, live runs keep their thread."""
    engine = service.runtime.deps.engine
    with engine.connect() as conn:
        text = conn.execute(select(_V.source).where(_V.sop_id == sop_id, _V.version == body.version)).scalar()
    if text is None:
        raise HTTPException(404, f"SOP {sop_id!r} has no version {body.version}")
    spec, source, problems = load_sop_text(text, f"{sop_id}.yaml", sop_id)
    if spec is None or problems:  # the catalog may have changed since it was saved
        return invalid(problems, text)
    with service._lock:
        service.runtime.replace_sop(spec, source)
    with engine.begin() as conn:
        conn.execute(update(SopVersion.__table__).where(_V.sop_id == sop_id, _V.status == "published")
                     .values(status="retired"))
        conn.execute(update(SopVersion.__table__).where(_V.sop_id == sop_id, _V.version == body.version)
                     .values(status="published"))
        conn.execute(WorkerState.__table__.delete().where(WorkerState.__table__.c.name == f"sop_paused/{sop_id}"))
        audit.record(conn, at=service.clock.now(), actor=actor, action="sop.publish", target=sop_id,
                     detail={"version": body.version})
    return _summary(service, spec)


def _set_enabled(service: Service, sop_id: str, enabled: bool, actor: str) -> dict[str, Any]:
    spec = _spec_or_404(service, sop_id)
    with service._lock:
        service.runtime.replace_sop(spec.model_copy(update={"enabled": enabled}),
                                    service.runtime.deps.library.sources[sop_id])
    with service.runtime.deps.engine.begin() as conn:
        name = f"sop_paused/{sop_id}"
        conn.execute(WorkerState.__table__.delete().where(WorkerState.__table__.c.name == name))
        if not enabled:
            conn.execute(WorkerState.__table__.insert().values(name=name, value=as_utc(service.clock.now()).isoformat()))
        audit.record(conn, at=service.clock.now(), actor=actor, action="sop.resume" if enabled else "sop.pause",
                     target=sop_id, detail={})
    return _summary(service, service.runtime.deps.library.sops[sop_id])


@router.post("/sops/{sop_id}/pause", response_model=SopSummary, responses={404: {"description": "unknown SOP"}})
def pause_sop(sop_id: str, service: ServiceDep, actor: EditorDep) -> dict[str, Any]:
    """No new enrolments or scheduled occurrences; runs already under way finish."""
    return _set_enabled(service, sop_id, False, actor)


@router.post("/sops/{sop_id}/resume", response_model=SopSummary, responses={404: {"description": "unknown SOP"}})
def resume_sop(sop_id: str, service: ServiceDep, actor: EditorDep) -> dict[str, Any]:
    return _set_enabled(service, sop_id, True, actor)

