"""The operator API (bearer token): SOPs, customers, conversations, employee tasks, knowledge, audit.

Every change is written to the audit log. SOP edits are saved as numbered versions after full
validation (problems come back as data with line numbers); publishing swaps the compiled graph in.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

import httpx
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import Base64Bytes, BaseModel, Field, ValidationError, model_validator
from sqlalchemy import func, select

from agent import memory
from agent.tasks import announce_done, mark_done
from api import audit, people
from api.bounds import INT64_MAX, body_invalid
from api.deps import EditorDep, OperatorDep, PrincipalDep, ServiceDep
from api.openapi import inlined_schema
from api.order_events import emit_for_import
from api.service import Service
from api.tables import AuditLog, KfSession, SopVersion
from api.wecom.client import WeComError
from knowledge.clock import as_utc
from knowledge.importer import ImportFormatError, import_file
from knowledge.retriever import SEARCH_KINDS
from knowledge.tables import Customer, CustomerTag, ProfileFact, TimelineEntry
from sop_graphs.actions import pause_bot_for, release_handoff
from sop_graphs.customers import BROADCAST
from sop_graphs.effects import Effects
from sop_graphs.enrolment import LIVE
from sop_graphs.tables import DueTouchpoint, EmployeeTask, SopRun

log = logging.getLogger("sopagent.operator")
router = APIRouter(prefix="/api", tags=["operator"], responses={401: {"description": "operator token required"},
                                                              403: {"description": "the caller's role may not"}})
_C, _T, _R = Customer.__table__.c, CustomerTag.__table__.c, SopRun.__table__.c
_V, _K = SopVersion.__table__.c, EmployeeTask.__table__.c
OWNER_ASSIGNEES = ("owner", "group_owner")  # a task for whoever owns the customer (跟进人)


# ---------------------------------------------------------------------- schemas

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
    next_step: str | None = Field(default=None, description="the step of the run's next scheduled action")
    next_due_at: datetime | None = None


class TakeoverIn(BaseModel):
    by: str | None = Field(default=None, max_length=64, description=(
        "Who takes over (employee userid); default the caller: their WeCom userid, else their name."))


class ConversationOut(BaseModel):
    customer_id: str
    bot_paused: bool


class TaskOut(BaseModel):
    id: int
    customer_id: str | None
    customer_name: str | None = None
    assignee: str
    kind: str
    title: str
    content: dict[str, Any]
    due_at: datetime
    status: str
    overdue: bool = False  # open past its due time
    created_at: datetime
    done_at: datetime | None = None


UploadFormat = Literal["csv", "json", "jsonl", "md", "xlsx"]
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_UPLOAD_MEDIA_TYPES: dict[str, str] = {XLSX_MEDIA_TYPE: "xlsx", "text/csv": "csv", "application/csv": "csv"}


class KnowledgeIn(BaseModel):
    format: UploadFormat
    content: str | None = Field(default=None, min_length=1, max_length=20_000_000,
                                description="The file as text (csv, json, jsonl, md).")
    content_base64: Base64Bytes | None = Field(default=None, min_length=1, description=(
        "The file's bytes, base64: an xlsx workbook, or a CSV saved in GBK/GB18030 (read as UTF-8 if it is)."))
    mapping: str | None = Field(default=None, max_length=200_000, description="YAML field/value mapping for the file.")
    sheet: str | None = Field(default=None, min_length=1, max_length=200,
                              description="xlsx: the worksheet to read (default: the first).")

    @model_validator(mode="after")
    def _one_content(self) -> KnowledgeIn:
        if (self.content is None) == (self.content_base64 is None):
            raise ValueError("send the file as exactly one of content (text) or content_base64 (bytes)")
        if self.format == "xlsx" and self.content is not None:
            raise ValueError("an xlsx workbook is binary: send it as content_base64")
        return self


class ImportOut(BaseModel):
    ok: bool
    rows: int
    written: int
    errors: list[dict[str, Any]]
    indexed: int | None = None
    encoding: str | None = Field(default=None, description="text files: the encoding read (utf-8 or gb18030)")
    sheet: str | None = Field(default=None, description="xlsx: the worksheet read")
    events_queued: int | None = Field(default=None, description="orders: order events the import implied, queued "
                                      "for the SOPs (status changes; new orders of the last 7 days)")


class AuditOut(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


# ---------------------------------------------------------------------- helpers

def _audit(conn: Any, service: Service, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    audit.record(conn, at=service.clock.now(), actor=actor, action=action, target=target, detail=detail)


def _customer_or_404(conn: Any, customer_id: str) -> Any:
    row = conn.execute(select(Customer.__table__).where(_C.id == customer_id)).mappings().first()
    if row is None:
        raise HTTPException(404, f"unknown customer {customer_id!r}")
    return row


# ---------------------------------------------------------------------- customers

def _with_tags(conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [r["id"] for r in rows]
    tags: dict[str, list[str]] = {i: [] for i in ids}
    for cid, tag in conn.execute(select(_T.customer_id, _T.tag).where(_T.customer_id.in_(ids)).order_by(_T.tag)):
        tags[cid].append(tag)
    return [{**dict(r), "tags": tags[r["id"]]} for r in rows]


@router.get("/customers", response_model=list[CustomerOut])
def search_customers(response: Response, service: ServiceDep, _: OperatorDep,
                     tag: str | None = Query(default=None, max_length=64),
                     stage: Literal["new", "active", "customer", "repeat", "silent", "churned"] | None = None,
                     channel_code: str | None = Query(default=None, max_length=64),
                     sop: str | None = Query(default=None, max_length=64, description="has a live run of this SOP"),
                     q: str | None = Query(default=None, max_length=64, description="name or id contains"),
                     limit: int = Query(default=50, ge=1, le=500),
                     offset: int = Query(default=0, ge=0, le=INT64_MAX)) -> Any:
    """One page of customers, newest first; the ``X-Total-Count`` header says how many match (pagination)."""
    where = []
    if tag:
        where.append(_C.id.in_(select(_T.customer_id).where(_T.tag == tag)))
    if stage:
        where.append(_C.stage == stage)
    if channel_code:
        where.append(_C.channel_code == channel_code)
    if sop:
        where.append(_C.id.in_(select(_R.customer_id).where(_R.sop_id == sop, _R.status.in_(LIVE))))
    if q:
        where.append(_C.name.contains(q) | _C.id.contains(q))
    with service.runtime.deps.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(Customer.__table__).where(*where)).scalar() or 0
        rows = conn.execute(select(Customer.__table__).where(*where).order_by(_C.added_at.desc(), _C.id)
                            .limit(limit).offset(offset)).mappings().all()
        response.headers["X-Total-Count"] = str(total)
        return _with_tags(conn, list(rows))


class ChannelCodeOut(BaseModel):
    code: str
    customers: int


@router.get("/channel-codes", response_model=list[ChannelCodeOut])
def channel_codes(service: ServiceDep, _: OperatorDep) -> Any:
    """The channel codes (渠道活码) customers came through, most customers first."""
    with service.runtime.deps.engine.connect() as conn:
        rows = conn.execute(select(_C.channel_code, func.count()).where(_C.channel_code.is_not(None))
                            .group_by(_C.channel_code).order_by(func.count().desc(), _C.channel_code)).all()
    return [ChannelCodeOut(code=code, customers=n) for code, n in rows]


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
    d = DueTouchpoint.__table__.c
    with service.runtime.deps.engine.connect() as conn:
        _customer_or_404(conn, customer_id)
        runs = [dict(r) for r in conn.execute(query.order_by(_R.started_at)).mappings()]
        due = conn.execute(select(d.run_id, d.step_id, d.due_at).where(
            d.customer_id == customer_id, d.status == "pending", d.run_id.in_([r["id"] for r in runs]))
            .order_by(d.due_at.desc())).all()
    following = {run_id: (step_id, at) for run_id, step_id, at in due}  # earliest wins: rows come latest first
    for run in runs:
        run["next_step"], run["next_due_at"] = following.get(run["id"], (None, None))
    return runs


# ---------------------------------------------------------------------- conversations

def _who(service: Service, body: TakeoverIn, actor: str) -> str:
    return body.by or people.userid_of(service.runtime.deps.engine, actor) or actor


@router.post("/conversations/{customer_id}/takeover", response_model=ConversationOut,
             responses={404: {"description": "unknown customer"}})
def take_over(customer_id: str, body: TakeoverIn, service: ServiceDep, actor: OperatorDep) -> Any:
    """A human takes the conversation: the bot stays quiet for this customer until released."""
    now = service.clock.now()
    by = _who(service, body, actor)
    with service.runtime.deps.engine.begin() as conn:
        _customer_or_404(conn, customer_id)
        effects = Effects()
        pause_bot_for(conn, effects, customer_id, at=now, key=f"takeover/{customer_id}/{now.isoformat()}",
                      summary=f"{by} 接管了对话：机器人暂停")
        effects.flush(conn)
        session = conn.execute(select(KfSession.__table__).where(KfSession.__table__.c.customer_id == customer_id)
                               ).mappings().first()
        _audit(conn, service, actor, "conversation.takeover", customer_id, {"by": by})
    if session is not None and service.client is not None:
        try:
            service.client.kf_trans(open_kfid=session["open_kfid"], external_userid=customer_id, service_state=3,
                                    servicer_userid=by)
        except (WeComError, httpx.TransportError) as exc:  # the bot is paused either way; WeCom can be retried
            log.warning("kf transfer of %s to %s failed: %s", customer_id, by, exc)
    return ConversationOut(customer_id=customer_id, bot_paused=True)


@router.post("/conversations/{customer_id}/release", response_model=ConversationOut,
             responses={404: {"description": "unknown customer"}})
def release(customer_id: str, body: TakeoverIn, service: ServiceDep, actor: OperatorDep) -> Any:
    now = service.clock.now()
    by = _who(service, body, actor)
    with service.runtime.deps.engine.begin() as conn:
        _customer_or_404(conn, customer_id)
        effects = Effects()
        release_handoff(conn, effects, customer_id, at=now, by=by)
        memory.reset_streak(conn, customer_id)  # the bot starts afresh: earlier unanswered turns were the human's
        effects.flush(conn)
        _audit(conn, service, actor, "conversation.release", customer_id, {"by": by})
    return ConversationOut(customer_id=customer_id, bot_paused=False)


# ---------------------------------------------------------------------- tasks

@router.get("/tasks", response_model=list[TaskOut])
def list_tasks(response: Response, service: ServiceDep, who: PrincipalDep,
               status: Literal["open", "done", "all"] = "open",
               assignee: str | None = Query(default=None, max_length=128),
               mine: bool = Query(default=False, description=(
                   "only my tasks: for my role or my name, and those for the owner (跟进人) of customers I own")),
               limit: int = Query(default=100, ge=1, le=1000),
               offset: int = Query(default=0, ge=0, le=INT64_MAX)) -> Any:
    """One page of employee tasks, open ones by due time (done ones newest first); ``X-Total-Count`` says how
    many match."""
    where = []
    if status != "all":
        where.append(_K.status == status)
    if assignee:
        where.append(_K.assignee == assignee)
    engine = service.runtime.deps.engine
    if mine:
        names = people.names_of(engine, who.username)
        owned = select(_C.id).where(_C.owner.in_(names))
        where.append(_K.assignee.in_(names | {who.role})
                     | (_K.assignee.in_(OWNER_ASSIGNEES) & _K.customer_id.in_(owned)))
    order = (_K.done_at.desc(), _K.id.desc()) if status == "done" else (_K.due_at, _K.id)
    now = as_utc(service.clock.now())
    with engine.connect() as conn:
        response.headers["X-Total-Count"] = str(conn.execute(
            select(func.count()).select_from(EmployeeTask.__table__).where(*where)).scalar() or 0)
        rows = [dict(r) for r in conn.execute(select(EmployeeTask.__table__).where(*where).order_by(*order)
                                              .limit(limit).offset(offset)).mappings()]
        ids = sorted({r["customer_id"] for r in rows if r["customer_id"]})
        names_by_id = dict(conn.execute(select(_C.id, _C.name).where(_C.id.in_(ids))).all()) if ids else {}
    return [{**r, "customer_id": None if r["customer_id"] == BROADCAST else r["customer_id"],
             "customer_name": names_by_id.get(r["customer_id"]),
             "overdue": r["status"] == "open" and as_utc(r["due_at"]) < now} for r in rows]


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

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inlined_schema(KnowledgeIn)},
    XLSX_MEDIA_TYPE: _BINARY, "text/csv": _BINARY, "application/octet-stream": _BINARY}}}


class _Upload(NamedTuple):
    suffix: str
    data: bytes
    mapping: str | None = None
    sheet: str | None = None


async def _read_upload(request: Request, format_: UploadFormat | None, filename: str | None, mapping: str | None,
                       sheet: str | None) -> _Upload:
    """The uploaded file: a JSON body (:class:`KnowledgeIn`), or the file itself as the body, its type from
    ``format``, else the extension of ``filename``, else the Content-Type."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = await request.body()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        if format_ or filename or mapping or sheet:
            raise HTTPException(400, "a JSON body carries format, mapping and sheet itself; the query parameters "
                                     "are for a file sent as the request body")
        try:
            body = KnowledgeIn.model_validate_json(raw)
        except ValidationError as exc:
            raise body_invalid(exc) from exc  # no 20 MB echo
        data = body.content.encode("utf-8") if body.content is not None else body.content_base64 or b""
        return _Upload(body.format, data, body.mapping, body.sheet)
    suffix = format_ or (Path(filename).suffix.lower().lstrip(".") if filename else None) \
        or _UPLOAD_MEDIA_TYPES.get(media)
    if suffix not in get_args(UploadFormat):
        raise HTTPException(415, f"cannot tell the file type of the body ({media or 'no Content-Type'}"
                                 f"{f', named {filename!r}' if filename else ''}): send .csv, .json, .jsonl, .md or "
                                 f".xlsx with ?filename=NAME.xlsx or ?format=xlsx, or Content-Type {XLSX_MEDIA_TYPE} "
                                 "or text/csv (an old .xls workbook: save it as .xlsx)")
    if not raw:
        raise HTTPException(400, "empty upload: send the file as the request body")
    return _Upload(suffix, raw, mapping, sheet)


@router.post("/knowledge/{kind}", response_model=ImportOut, openapi_extra=_UPLOAD_BODY, responses={
    400: {"description": "unreadable file"}, 415: {"description": "file type unknown"}, 422: {"model": ImportOut}})
async def import_knowledge(
        kind: Literal["products", "orders", "logistics", "faq", "policy", "promotions"], request: Request,
        service: ServiceDep, actor: EditorDep,
        format_: Annotated[UploadFormat | None, Query(alias="format", description=(
            "file sent as the body: its type (default: from filename, else the Content-Type)"))] = None,
        filename: Annotated[str | None, Query(max_length=255, description=(
            "file sent as the body: its name, e.g. 商品.xlsx; only the extension is used"))] = None,
        mapping: Annotated[str | None, Query(max_length=200_000, description=(
            "file sent as the body: YAML field/value mapping (long mappings: use the JSON body)"))] = None,
        sheet: Annotated[str | None, Query(min_length=1, max_length=200, description=(
            "file sent as the body: the xlsx worksheet to read (default: the first)"))] = None) -> Any:
    """Validate every row, import all or none, re-index for retrieval.

    The file comes as a JSON body (``content`` text, or ``content_base64`` bytes for an xlsx workbook or a GBK CSV)
    or as the request body itself (an .xlsx upload, a CSV in UTF-8 or GBK/GB18030, ...), its type from
    ``?format=``, the extension of ``?filename=`` or the Content-Type. CSV and xlsx row errors carry the row
    number Excel shows (header row 1, first data row 2)."""
    upload = await _read_upload(request, format_, filename, mapping, sheet)

    def run() -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload.{upload.suffix}"
            path.write_bytes(upload.data)
            mapping_path = None
            if upload.mapping:
                mapping_path = Path(tmp) / "mapping.yaml"
                mapping_path.write_text(upload.mapping, encoding="utf-8")
            try:
                report = import_file(service.runtime.deps.engine, path, kind, mapping_path,
                                     service.settings.shop_timezone, upload.sheet)
            except ImportFormatError as exc:  # name the parts of the request, not our temporary files
                raise HTTPException(400, str(exc).replace(f"{tmp}/", "")) from exc
        out = ImportOut(ok=report.ok, rows=report.rows, written=report.written, encoding=report.encoding,
                        sheet=report.sheet,
                        errors=[{"row": e.row, "field": e.field, "message": e.message} for e in report.errors])
        if report.ok:
            if report.changes:
                out.events_queued = emit_for_import(service.runtime.deps.engine, report.changes,
                                                    now=service.clock.now())
                service.wake()
            conversation = service.runtime.conversation
            if kind in SEARCH_KINDS and conversation is not None and conversation.retriever is not None:
                out.indexed = conversation.retriever.sync([kind])[kind]
            with service.runtime.deps.engine.begin() as conn:
                _audit(conn, service, actor, "knowledge.import", kind, {"rows": report.rows})
        return out

    out = await run_in_threadpool(run)
    return out if out.ok else JSONResponse(out.model_dump(), status_code=422)


@router.get("/audit", response_model=list[AuditOut])
def audit_log(response: Response, service: ServiceDep, _: OperatorDep,
              limit: int = Query(default=100, ge=1, le=1000), offset: int = Query(default=0, ge=0, le=INT64_MAX),
              actor: str | None = Query(default=None, max_length=64, description="who did it"),
              target: str | None = Query(default=None, max_length=128, description="what it was done to"),
              action: str | None = Query(default=None, max_length=64, description="action, or its prefix (sop.)")) -> Any:
    """The audit log, newest first; ``X-Total-Count`` says how many entries match."""
    a = AuditLog.__table__.c
    where = []
    if actor:
        where.append(a.actor == actor)
    if target:
        where.append(a.target == target)
    if action:
        where.append(a.action.startswith(action, autoescape=True))
    with service.runtime.deps.engine.connect() as conn:
        response.headers["X-Total-Count"] = str(conn.execute(select(func.count()).select_from(AuditLog.__table__)
                                                             .where(*where)).scalar() or 0)
        return [dict(r) for r in conn.execute(select(AuditLog.__table__).where(*where).order_by(a.id.desc())
                                              .limit(limit).offset(offset)).mappings()]
