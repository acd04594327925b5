"""The SOP editor's tools: test-run an SOP (a draft or the running version) against a simulated customer and
clock, diff two versions, and roll back to an earlier version (saved again as a new version and published)."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.bounds import INT64_MAX
from api.deps import EditorDep, OperatorDep, ServiceDep
from api.problems import ValidationFailed, invalid
from api.routes.sops import PublishIn, SopIn, SopSummary, publish_sop, save_sop
from api.service import Service
from api.tables import SopVersion
from api.test_run import TestRunIn, TestRunOut, test_run
from sop_graphs.loader import load_sop_file, load_sop_text, sop_files, with_sop
from sop_graphs.validator import validate

router = APIRouter(prefix="/api/sops", tags=["sop editor"], responses={401: {"description": "operator token required"},
                                                             403: {"description": "the caller's role may not"}})
_V = SopVersion.__table__.c
LIBRARY = 0  # "version 0": the SOP as the library file has it (bundled SOPs have no saved versions)


class DiffOut(BaseModel):
    sop_id: str
    from_version: int
    to_version: int
    diff: str = Field(description="unified diff")


class RollbackIn(BaseModel):
    version: int = Field(ge=0, le=INT64_MAX, description="the version to run again; 0 = the library file")


def _text(service: Service, sop_id: str, version: int) -> str:
    if version == LIBRARY:  # the library's own file, whatever an operator published since
        for path in sop_files([service.settings.library_path]):
            spec, _, _ = load_sop_file(path)
            if spec is not None and spec.id == sop_id:
                return path.read_text(encoding="utf-8")
        raise HTTPException(404, f"SOP {sop_id!r} has no library file")
    with service.runtime.deps.engine.connect() as conn:
        text = conn.execute(select(_V.source).where(_V.sop_id == sop_id, _V.version == version)).scalar()
    if text is None:
        raise HTTPException(404, f"SOP {sop_id!r} has no version {version}")
    return str(text)


@router.post("/{sop_id}/test-run", response_model=TestRunOut,
             responses={404: {"description": "unknown SOP"}, 422: {"model": ValidationFailed}})
async def run_test(sop_id: str, body: TestRunIn, service: ServiceDep, _: EditorDep) -> Any:
    """What the SOP (``yaml``: a draft; default the running version) would send a simulated customer, and when."""
    library = service.runtime.deps.library
    if body.yaml is None:
        spec, source = library.sops.get(sop_id), library.sources.get(sop_id)
        if spec is None or source is None:
            raise HTTPException(404, f"unknown SOP {sop_id!r}")
    else:
        spec, source, problems = load_sop_text(body.yaml, f"{sop_id}.yaml", sop_id)
        if spec is not None and not problems:
            problems = [p for p in validate(with_sop(library, spec, source)) if p.file == source.file]
        if spec is None or problems:
            return invalid(problems, body.yaml)
    conversation = service.runtime.conversation
    return await run_in_threadpool(test_run, service.settings, library, spec, source, body, now=service.clock.now(),
                                   engine=service.runtime.deps.engine,
                                   embedder=conversation.embedder if conversation is not None else None)


class SourceOut(BaseModel):
    sop_id: str
    version: int = Field(description="0 = the library file")
    yaml: str


@router.get("/{sop_id}/source", response_model=SourceOut, responses={404: {"description": "unknown SOP or version"}})
def sop_source(sop_id: str, service: ServiceDep, _: OperatorDep,
               version: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None) -> Any:
    """An SOP's YAML as written: a given version, or by default the newest saved one (else the library file)."""
    if version is None:
        with service.runtime.deps.engine.connect() as conn:
            version = conn.execute(select(func.max(_V.version)).where(_V.sop_id == sop_id)).scalar() or LIBRARY
    return SourceOut(sop_id=sop_id, version=version, yaml=_text(service, sop_id, version))


@router.get("/{sop_id}/diff", response_model=DiffOut, responses={404: {"description": "unknown version"}})
def diff_versions(sop_id: str, service: ServiceDep, _: OperatorDep,
                  from_: Annotated[int, Query(alias="from", ge=0, le=INT64_MAX)] = LIBRARY,
                  to: Annotated[int, Query(ge=0, le=INT64_MAX)] = LIBRARY) -> Any:
    """A unified diff between two versions (0 = the library file)."""
    before, after = _text(service, sop_id, from_), _text(service, sop_id, to)
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"{sop_id} v{from_}", tofile=f"{sop_id} v{to}"))
    return DiffOut(sop_id=sop_id, from_version=from_, to_version=to, diff=diff)


@router.post("/{sop_id}/rollback", response_model=SopSummary,
             responses={404: {"description": "unknown version"}, 422: {"model": ValidationFailed}})
def roll_back(sop_id: str, body: RollbackIn, service: ServiceDep, actor: EditorDep) -> Any:
    """Run an earlier version again: its text is saved as a new version (history stays linear) and published."""
    saved = save_sop(sop_id, SopIn(yaml=_text(service, sop_id, body.version)), service, actor)
    if isinstance(saved, JSONResponse):
        return saved  # the old text no longer validates against today's catalogue: every problem, with its line
    return publish_sop(sop_id, PublishIn(version=saved.version), service, actor)


