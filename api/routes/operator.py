"""The operator API (bearer token): SOPs, customers, conversations, employee tasks, knowledge, audit.

Every change is written to the audit log. SOP edits are saved as numbered versions after full
validation (problems come back as data with line numbers); publishing swaps the compiled graph in.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from agent import memory
from agent.tasks import announce_done, mark_done
from api.bounds import INT64_MAX
from api.deps import EditorDep, OperatorDep, PrincipalDep, ServiceDep
from api.service import Service
from api.tables import AuditLog, KfSession, SopVersion
from api.wecom.client import WeComError
from knowledge.clock import as_utc
from knowledge.importer import ImportFormatError, import_file
from knowledge.retriever import SEARCH_KINDS
from knowledge.tables import Customer, CustomerTag, ProfileFact, TimelineEntry
from sop_graphs.actions import pause_bot_for, release_handoff
from sop_graphs.effects import Effects
from sop_graphs.enrolment import LIVE
from sop_graphs.loader import Problem, load_sop_text, with_sop
from sop_graphs.mermaid import to_mermaid
from sop_graphs.tables import EmployeeTask, SopRun, WorkerState
from sop_graphs.validator import validate

log = logging.getLogger("sopagent.operator")
router = APIRouter(prefix="/api", tags=["operator"], responses={401: {"description": "operator token required"},
                                                              403: {"description": "the caller's role may not"}})
_C, _T, _R = Customer.__table__.c, CustomerTag.__table__.c, SopRun.__table__.c
_V, _K = SopVersion.__table__.c, EmployeeTask.__table__.c


# ---------------------------------------------------------------------- schemas

class SopSummary(BaseModel):
    id: str
    name: str
    family: str
    version: int
    enabled: bool
    live_runs: int
    published_version: int | None = Field(description="operator version running, None = bundled library")


class SopDetail(SopSummary):
    spec: dict[str, Any]


class SopIn(BaseModel):
    yaml: str = Field(min_length=1, max_length=200_000, description="The whole SOP as YAML.")


class ProblemOut(BaseModel):
    line: int
    where: str
    reason: str


class ValidationFailed(BaseModel):
    problems: list[ProblemOut]


class VersionOut(BaseModel):
    sop_id: str
    version: int
    status: str
    created_at: datetime
    created_by: str


class PublishIn(BaseModel):
    version: int = Field(ge=1, le=INT64_MAX)


class CustomerOut(BaseModel):
    id: str
    name: str
    owner: str
    stage: str
    channel_code: str | None
    added_at: datetime
    tags: list[str]
    bot_paused: bool


class TagOut(BaseModel):
    tag: str
    source: str
    created_at: datetime


class FactOut(BaseModel):
    key: str
    value: str
    source: str
    method: str
    current: bool
    at: datetime


class ProfileOut(CustomerOut):
    attributes: dict[str, Any]
    orders_count: int
    unsubscribed: bool
    tag_provenance: list[TagOut]
    facts: list[FactOut]


class TimelineOut(BaseModel):
    at: datetime
    kind: str
    summary: str
    run_id: str | None


class RunOut(BaseModel):
    id: str
    sop_id: str
    status: str
    current_step: str | None
    waiting_kind: str | None
    started_at: datetime


class TakeoverIn(BaseModel):
    by: str = Field(default="operator", max_length=64, description="Who takes over (employee userid).")


class ConversationOut(BaseModel):
    customer_id: str
    bot_paused: bool


class TaskOut(BaseModel):
    id: int
    customer_id: str | None
    assignee: str
    kind: str
    title: str
    content: dict[str, Any]
    due_at: datetime
    status: str


class KnowledgeIn(BaseModel):
    format: Literal["csv", "json", "jsonl", "md"]
    content: str = Field(min_length=1, max_length=20_000_000)
    mapping: str | None = Field(default=None, max_length=200_000, description="YAML field/value mapping for the file.")


class ImportOut(BaseModel):
    ok: bool
    rows: int
    written: int
    errors: list[dict[str, Any]]
    indexed: int | None = None


class AuditOut(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


# ---------------------------------------------------------------------- helpers

def _audit(conn: Any, service: Service, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    conn.execute(AuditLog.__table__.insert().values(at=as_utc(service.clock.now()), actor=actor, action=action,
                                                    target=target, detail=detail))


def _spec_or_404(service: Service, sop_id: str) -> Any:
    spec = service.runtime.deps.library.sops.get(sop_id)
    if spec is None:
        raise HTTPException(404, f"unknown SOP {sop_id!r}")
    return spec


def _summary(service: Service, spec: Any) -> dict[str, Any]:
    with service.runtime.deps.engine.connect() as conn:
        live = conn.execute(select(func.count()).select_from(SopRun.__table__)
                            .where(_R.sop_id == spec.id, _R.status.in_(LIVE))).scalar() or 0
        published = conn.execute(select(_V.version).where(_V.sop_id == spec.id, _V.status == "published")).scalar()
    return {"id": spec.id, "name": spec.name, "family": spec.family, "version": spec.version, "enabled": spec.enabled,
            "live_runs": live, "published_version": published}


def _customer_or_404(conn: Any, customer_id: str) -> Any:
    row = conn.execute(select(Customer.__table__).where(_C.id == customer_id)).mappings().first()
    if row is None:
        raise HTTPException(404, f"unknown customer {customer_id!r}")
    return row


# ---------------------------------------------------------------------- SOPs

@router.get("/sops", response_model=list[SopSummary])
def list_sops(service: ServiceDep, _: OperatorDep) -> list[dict[str, Any]]:
    return [_summary(service, spec) for spec in sorted(service.runtime.deps.library.sops.values(), key=lambda s: s.id)]


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
    library = service.runtime.deps.library
    spec, source, problems = load_sop_text(body.yaml, f"{sop_id}.yaml", sop_id)
    if spec is not None and spec.id != sop_id:
        problems.append(Problem(source.file, source.line("id"), spec.id,
                                f"id {spec.id!r} does not match the URL's {sop_id!r}"))
    if spec is not None and not problems:
        problems = [p for p in validate(with_sop(library, spec, source)) if p.file == source.file]
    if problems:
        return JSONResponse(ValidationFailed(problems=[ProblemOut(line=p.line, where=p.where, reason=p.reason)
                                                       for p in problems]).model_dump(), status_code=422)
    now = as_utc(service.clock.now())
    with service.runtime.deps.engine.begin() as conn:
        version = (conn.execute(select(func.max(_V.version)).where(_V.sop_id == sop_id)).scalar() or 0) + 1
        conn.execute(SopVersion.__table__.insert().values(sop_id=sop_id, version=version, source=body.yaml,
                                                          status="draft", created_at=now, created_by=actor))
        _audit(conn, service, actor, "sop.save", sop_id, {"version": version})
    return VersionOut(sop_id=sop_id, version=version, status="draft", created_at=now, created_by=actor)


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
        return JSONResponse(ValidationFailed(problems=[ProblemOut(line=p.line, where=p.where, reason=p.reason)
                                                       for p in problems]).model_dump(), status_code=422)
    with service._lock:
        service.runtime.replace_sop(spec, source)
    with engine.begin() as conn:
        conn.execute(update(SopVersion.__table__).where(_V.sop_id == sop_id, _V.status == "published")
                     .values(status="retired"))
        conn.execute(update(SopVersion.__table__).where(_V.sop_id == sop_id, _V.version == body.version)
                     .values(status="published"))
        conn.execute(WorkerState.__table__.delete().where(WorkerState.__table__.c.name == f"sop_paused/{sop_id}"))
        _audit(conn, service, actor, "sop.publish", sop_id, {"version": body.version})
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
        _audit(conn, service, actor, "sop.resume" if enabled else "sop.pause", sop_id, {})
    return _summary(service, service.runtime.deps.library.sops[sop_id])


@router.post("/sops/{sop_id}/pause", response_model=SopSummary, responses={404: {"description": "unknown SOP"}})
def pause_sop(sop_id: str, service: ServiceDep, actor: EditorDep) -> dict[str, Any]:
    """No new enrolments or scheduled occurrences; runs already under way finish."""
    return _set_enabled(service, sop_id, False, actor)


@router.post("/sops/{sop_id}/resume", response_model=SopSummary, responses={404: {"description": "unknown SOP"}})
def resume_sop(sop_id: str, service: ServiceDep, actor: EditorDep) -> dict[str, Any]:
    return _set_enabled(service, sop_id, True, actor)


# ---------------------------------------------------------------------- customers

def _with_tags(conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [r["id"] for r in rows]
    tags: dict[str, list[str]] = {i: [] for i in ids}
    for cid, tag in conn.execute(select(_T.customer_id, _T.tag).where(_T.customer_id.in_(ids)).order_by(_T.tag)):
        tags[cid].append(tag)
    return [{**dict(r), "tags": tags[r["id"]]} for r in rows]


@router.get("/customers", response_model=list[CustomerOut])
def search_customers(service: ServiceDep, _: OperatorDep, tag: str | None = Query(default=None, max_length=64),
                     stage: Literal["new", "active", "customer", "repeat", "silent", "churned"] | None = None,
                     q: str | None = Query(default=None, max_length=64, description="name or id contains"),
                     limit: int = Query(default=50, ge=1, le=500),
                     offset: int = Query(default=0, ge=0, le=INT64_MAX)) -> Any:
    query = select(Customer.__table__)
    if tag:
        query = query.where(_C.id.in_(select(_T.customer_id).where(_T.tag == tag)))
    if stage:
        query = query.where(_C.stage == stage)
    if q:
        query = query.where(_C.name.contains(q) | _C.id.contains(q))
    with service.runtime.deps.engine.connect() as conn:
        rows = conn.execute(query.order_by(_C.added_at.desc(), _C.id).limit(limit).offset(offset)).mappings().all()
        return _with_tags(conn, list(rows))


@router.get("/customers/{customer_id}", response_model=ProfileOut, responses={404: {"description": "unknown"}})
def customer_profile(customer_id: str, service: ServiceDep, _: OperatorDep) -> Any:
    with service.runtime.deps.engine.connect() as conn:
        row = _customer_or_404(conn, customer_id)
        base = _with_tags(conn, [row])[0]
        tags = conn.execute(select(_T.tag, _T.source, _T.created_at).where(_T.customer_id == customer_id)
                            .order_by(_T.created_at)).mappings().all()
        f = ProfileFact.__table__.c
        facts = conn.execute(select(ProfileFact.__table__).where(f.customer_id == customer_id)
                             .order_by(f.at)).mappings().all()
    return {**base, "unsubscribed": row["unsubscribed_at"] is not None, "tag_provenance": [dict(t) for t in tags],
            "facts": [{k: x[k] for k in ("key", "value", "source", "method", "current", "at")} for x in facts]}


@router.get("/customers/{customer_id}/timeline", response_model=list[TimelineOut])
def customer_timeline(customer_id: str, service: ServiceDep, _: OperatorDep,
                      limit: int = Query(default=200, ge=1, le=2000)) -> Any:
    t = TimelineEntry.__table__.c
    with service.runtime.deps.engine.connect() as conn:
        _customer_or_404(conn, customer_id)
        return [dict(r) for r in conn.execute(select(t.at, t.kind, t.summary, t.run_id).where(
            t.customer_id == customer_id).order_by(t.at.desc(), t.id.desc()).limit(limit)).mappings()]


@router.get("/customers/{customer_id}/runs", response_model=list[RunOut])
def customer_runs(customer_id: str, service: ServiceDep, _: OperatorDep,
                  active: bool = Query(default=True, description="only runs still live")) -> Any:
    query = select(_R.id, _R.sop_id, _R.status, _R.current_step, _R.waiting_kind, _R.started_at).where(
        _R.customer_id == customer_id)
    if active:
        query = query.where(_R.status.in_(LIVE))
    with service.runtime.deps.engine.connect() as conn:
        _customer_or_404(conn, customer_id)
        return [dict(r) for r in conn.execute(query.order_by(_R.started_at)).mappings()]


# ---------------------------------------------------------------------- conversations

@router.post("/conversations/{customer_id}/takeover", response_model=ConversationOut,
             responses={404: {"description": "unknown customer"}})
def take_over(customer_id: str, body: TakeoverIn, service: ServiceDep, actor: OperatorDep) -> Any:
    """A human takes the conversation: the bot stays quiet for this customer until released."""
    now = service.clock.now()
    with service.runtime.deps.engine.begin() as conn:
        _customer_or_404(conn, customer_id)
        effects = Effects()
        pause_bot_for(conn, effects, customer_id, at=now, key=f"takeover/{customer_id}/{now.isoformat()}",
                      summary=f"{body.by} 接管了对话：机器人暂停")
        effects.flush(conn)
        session = conn.execute(select(KfSession.__table__).where(KfSession.__table__.c.customer_id == customer_id)
                               ).mappings().first()
        _audit(conn, service, actor, "conversation.takeover", customer_id, {"by": body.by})
    if session is not None and service.client is not None:
        try:
            service.client.kf_trans(open_kfid=session["open_kfid"], external_userid=customer_id, service_state=3,
                                    servicer_userid=body.by)
        except (WeComError, httpx.TransportError) as exc:  # the bot is paused either way; WeCom can be retried
            log.warning("kf transfer of %s to %s failed: %s", customer_id, body.by, exc)
    return ConversationOut(customer_id=customer_id, bot_paused=True)


@router.post("/conversations/{customer_id}/release", response_model=ConversationOut,
             responses={404: {"description": "unknown customer"}})
def release(customer_id: str, body: TakeoverIn, service: ServiceDep, actor: OperatorDep) -> Any:
    now = service.clock.now()
    with service.runtime.deps.engine.begin() as conn:
        _customer_or_404(conn, customer_id)
        effects = Effects()
        release_handoff(conn, effects, customer_id, at=now, by=body.by)
        memory.reset_streak(conn, customer_id)  # the bot starts afresh: earlier unanswered turns were the human's
        effects.flush(conn)
        _audit(conn, service, actor, "conversation.release", customer_id, {"by": body.by})
    return ConversationOut(customer_id=customer_id, bot_paused=False)


# ---------------------------------------------------------------------- tasks

@router.get("/tasks", response_model=list[TaskOut])
def list_tasks(service: ServiceDep, who: PrincipalDep, status: Literal["open", "done"] | None = "open",
               assignee: str | None = Query(default=None, max_length=128),
               mine: bool = Query(default=False, description="only tasks for my role or my name"),
               limit: int = Query(default=100, ge=1, le=1000)) -> Any:
    query = select(EmployeeTask.__table__)
    if status:
        query = query.where(_K.status == status)
    if assignee:
        query = query.where(_K.assignee == assignee)
    if mine:
        query = query.where(_K.assignee.in_([who.username, who.role]))
    with service.runtime.deps.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(_K.due_at, _K.id).limit(limit)).mappings()]


@router.post("/tasks/{task_id}/complete", response_model=TaskOut, responses={404: {"description": "unknown task"}})
def complete_task(task_id: Annotated[int, PathParam(ge=1, le=INT64_MAX)], service: ServiceDep,
                  actor: OperatorDep) -> Any:
    with service.runtime.deps.engine.begin() as conn:
        task = mark_done(conn, task_id, service.clock.now())
        if task is None:
            raise HTTPException(404, f"unknown task {task_id}")
        _audit(conn, service, actor, "task.complete", str(task_id), {})
    announce_done(service.runtime.deps, task)  # the complaint SOP surveys only after a person handled it
    return task


# ---------------------------------------------------------------------- knowledge and audit

@router.post("/knowledge/{kind}", response_model=ImportOut, responses={400: {"description": "unreadable file"},
                                                                         422: {"model": ImportOut}})
async def import_knowledge(kind: Literal["products", "orders", "logistics", "faq", "policy", "promotions"],
                           body: KnowledgeIn, service: ServiceDep, actor: EditorDep) -> Any:
    """Validate every row, import all or none, re-index for retrieval."""
    def run() -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload.{body.format}"
            path.write_text(body.content, encoding="utf-8")
            mapping = None
            if body.mapping:
                mapping = Path(tmp) / "mapping.yaml"
                mapping.write_text(body.mapping, encoding="utf-8")
            try:
                report = import_file(service.runtime.deps.engine, path, kind, mapping,
                                     service.settings.shop_timezone)
            except ImportFormatError as exc:  # name the parts of the request, not our temporary files
                raise HTTPException(400, str(exc).replace(f"{tmp}/", "")) from exc
        out = ImportOut(ok=report.ok, rows=report.rows, written=report.written,
                        errors=[{"row": e.row, "field": e.field, "message": e.message} for e in report.errors])
        if report.ok:
            conversation = service.runtime.conversation
            if kind in SEARCH_KINDS and conversation is not None and conversation.retriever is not None:
                out.indexed = conversation.retriever.sync([kind])[kind]
            with service.runtime.deps.engine.begin() as conn:
                _audit(conn, service, actor, "knowledge.import", kind, {"rows": report.rows})
        return out

    out = await run_in_threadpool(run)
    return out if out.ok else JSONResponse(out.model_dump(), status_code=422)


@router.get("/audit", response_model=list[AuditOut])
def audit_log(service: ServiceDep, _: OperatorDep, limit: int = Query(default=100, ge=1, le=1000)) -> Any:
    a = AuditLog.__table__.c
    with service.runtime.deps.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(AuditLog.__table__).order_by(a.id.desc()).limit(limit)).mappings()]
