"""The library's catalogue files through the API: read, edit (checked against every SOP, versioned, audited,
applied without a restart) and their version history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api import audit, library_files
from api.deps import EditorDep, OperatorDep, ServiceDep
from api.problems import ValidationFailed, invalid
from knowledge.clock import as_utc

router = APIRouter(prefix="/api/library", tags=["library"], responses={401: {"description": "operator token required"},
                                                             403: {"description": "the caller's role may not"}})
FileName = Literal["materials.yaml", "campaigns.yaml", "groups.yaml", "tags.yaml"]


class FileIn(BaseModel):
    yaml: str = Field(max_length=500_000)


class FileOut(BaseModel):
    name: str
    yaml: str


class FileVersion(BaseModel):
    version: int
    status: str
    created_at: datetime
    created_by: str


@router.get("/{name}", response_model=FileOut)
def read_file(name: FileName, service: ServiceDep, _: OperatorDep) -> Any:
    """The running text: the published edit, else the library's file."""
    return FileOut(name=name, yaml=library_files.current_text(service.runtime.deps.engine,
                                                              service.settings.library_path, name))


@router.get("/{name}/versions", response_model=list[FileVersion])
def file_versions(name: FileName, service: ServiceDep, _: OperatorDep) -> Any:
    return library_files.versions(service.runtime.deps.engine, name)


@router.put("/{name}", response_model=list[FileVersion], responses={422: {"model": ValidationFailed}})
def edit_file(name: FileName, body: FileIn, service: ServiceDep, actor: EditorDep) -> Any:
    """Check the library with this text (every SOP against the new catalogue), then store it as a new published
    version and run it — in this process now, in the others at their next library poll."""
    runtime = service.runtime
    engine = runtime.deps.engine
    with engine.connect() as conn:
        others = {n: text for n, (_, text) in library_files.published(conn).items() if n != name}
    catalog, problems = library_files.check(runtime.deps.library, service.settings.library_path, others, name,
                                            body.yaml)
    if problems:
        return invalid(problems, body.yaml)
    now = as_utc(service.clock.now())
    with engine.begin() as conn:
        version = library_files.save(conn, name, body.yaml, actor=actor, at=now)
        audit.record(conn, at=now, actor=actor, action="library.edit", target=name, detail={"version": version})
    with service._lock:
        library_files.apply(runtime, catalog)
    return library_files.versions(engine, name)
