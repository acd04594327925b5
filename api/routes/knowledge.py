"""What the agent can answer from: per kind, the rows in the shop's tables and the documents indexed for
retrieval; the documents themselves, paged; and a trial search that ranks them as the agent would."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.bounds import INT64_MAX
from api.deps import OperatorDep, ServiceDep
from api.service import Service
from knowledge.retriever import SEARCH_KINDS, Retriever, corpus

router = APIRouter(prefix="/api/knowledge", tags=["knowledge"], responses={401: {"description": "operator token required"},
                                                             403: {"description": "the caller's role may not"}})
Kind = Literal["products", "faq", "policy", "promotions"]


class KindOut(BaseModel):
    kind: str
    documents: int
    indexed: int


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str


class HitOut(DocumentOut):
    kind: str
    score: float
    lexical: bool


def _retriever(service: Service) -> Retriever:
    conversation = service.runtime.conversation
    if conversation is None or conversation.retriever is None:
        raise HTTPException(503, "this process has no retriever")
    return conversation.retriever


@router.get("", response_model=list[KindOut])
async def knowledge_summary(service: ServiceDep, _: OperatorDep) -> Any:
    """Per kind: the documents built from the shop's tables and how many of them are indexed."""
    retriever = _retriever(service)

    def count() -> list[KindOut]:
        return [KindOut(kind=k, documents=len(corpus(service.runtime.deps.engine, k)), indexed=retriever.indexed(k))
                for k in SEARCH_KINDS]
    return await run_in_threadpool(count)


@router.get("/search", response_model=list[HitOut])
async def trial_search(service: ServiceDep, _: OperatorDep, q: str = Query(min_length=1, max_length=200),
                       kind: Kind | None = None, k: int = Query(default=5, ge=1, le=20)) -> Any:
    """Rank the documents for a question as the agent's retrieval does (every kind, or one)."""
    retriever = _retriever(service)

    def search() -> list[HitOut]:
        hits = [h for one in ([kind] if kind else SEARCH_KINDS) for h in retriever.search(q, one, k=k)]
        hits.sort(key=lambda h: h.score, reverse=True)
        return [HitOut(kind=h.kind, id=h.id, title=h.title, text=h.text[:500], score=round(h.score, 4),
                       lexical=h.lexical) for h in hits[:k]]
    return await run_in_threadpool(search)


@router.get("/{kind}/documents", response_model=list[DocumentOut])
async def documents(kind: Kind, response: Response, service: ServiceDep, _: OperatorDep,
                    q: str | None = Query(default=None, max_length=64, description="title or text contains"),
                    limit: int = Query(default=50, ge=1, le=500),
                    offset: int = Query(default=0, ge=0, le=INT64_MAX)) -> Any:
    """One page of the documents of ``kind`` as retrieval sees them; ``X-Total-Count`` says how many match."""
    docs = await run_in_threadpool(corpus, service.runtime.deps.engine, kind)
    if q:
        docs = [d for d in docs if q in d.title or q in d.text]
    response.headers["X-Total-Count"] = str(len(docs))
    return [DocumentOut(id=d.id, title=d.title, text=d.text[:2000]) for d in docs[offset:offset + limit]]
