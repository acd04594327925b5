"""The console's chat simulator: start a session, play customer messages, end it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import OperatorDep, ServiceDep
from api.simulator import SessionLimit, SimMessage, SimSessionOut, SimStart, Simulator

router = APIRouter(prefix="/api/simulator", tags=["simulator"], responses={401: {"description": "operator token required"},
                                                             403: {"description": "the caller's role may not"}})


def _simulator(request: Request) -> Simulator:
    return request.app.state.simulator  # type: ignore[no-any-return]


@router.post("", response_model=SimSessionOut, status_code=201)
async def start_simulation(request: Request, body: SimStart, service: ServiceDep, _: OperatorDep) -> Any:
    """A simulated customer adds the shop; the first turn shows what the SOPs did on that."""
    unknown = sorted(set(body.sops or ()) - set(service.runtime.deps.library.sops))
    if unknown:
        raise HTTPException(422, f"unknown SOPs: {', '.join(unknown)}")
    conversation = service.runtime.conversation
    return await run_in_threadpool(_simulator(request).start, service.settings, service.runtime.deps.library,
                                   service.runtime.deps.engine, body, now=service.clock.now(),
                                   embedder=conversation.embedder if conversation is not None else None)


@router.post("/{session_id}/messages", response_model=SimSessionOut,
             responses={404: {"description": "unknown or expired session"}, 409: {"description": "too many turns"}})
async def say(request: Request, session_id: str, body: SimMessage, _: OperatorDep) -> Any:
    """The simulated customer writes; the result holds every turn so far, this one last."""
    try:
        out = await run_in_threadpool(_simulator(request).say, session_id, body)
    except SessionLimit as exc:
        raise HTTPException(409, str(exc)) from exc
    if out is None:
        raise HTTPException(404, "unknown or expired simulation: start a new one")
    return out


@router.delete("/{session_id}", status_code=204, responses={404: {"description": "unknown or expired session"}})
async def end_simulation(request: Request, session_id: str, _: OperatorDep) -> Response:
    if not await run_in_threadpool(_simulator(request).end, session_id):
        raise HTTPException(404, "unknown or expired simulation")
    return Response(status_code=204)
