"""Validation problems as the API returns them: line and column in the text the operator sent."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sop_graphs.loader import Problem


class ProblemOut(BaseModel):
    line: int
    column: int
    where: str
    reason: str


class ValidationFailed(BaseModel):
    problems: list[ProblemOut]


def column_of(text: str, line: int) -> int:
    """1-based column where the content of ``line`` starts (the key a semantic problem is about)."""
    rows = text.splitlines()
    if not 1 <= line <= len(rows):
        return 1
    row = rows[line - 1]
    stripped = row.lstrip(" -")
    return len(row) - len(stripped) + 1 if stripped else 1


def problems_out(problems: Iterable[Problem], text: str) -> list[ProblemOut]:
    return [ProblemOut(line=p.line, column=p.column or column_of(text, p.line), where=p.where, reason=p.reason)
            for p in problems]


def invalid(problems: Iterable[Problem], text: str) -> JSONResponse:
    """422 with every problem, each with its line and column."""
    return JSONResponse(ValidationFailed(problems=problems_out(problems, text)).model_dump(), status_code=422)
