"""Compiles an SOP spec into a LangGraph StateGraph: one node per step, conditional edges by route.

This is the only place graphs are built; each SOP is compiled once per process.
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from sop_graphs.deps import RunContext
from sop_graphs.nodes import AWAIT, make_nodes
from sop_graphs.spec import SopSpec
from sop_graphs.state import RunState
from sop_graphs.timing import plan_segment
from sop_graphs.validator import edges


def route_of(state: RunState) -> str:
    """Router shared by every step: the node already chose; the path map names the legal targets."""
    return state.get("route") or END


def compile_sop(spec: SopSpec, checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """Build and compile the graph of ``spec`` (validated beforehand)."""
    builder: StateGraph = StateGraph(RunState, context_schema=RunContext)
    for index in range(len(spec.steps)):
        for name, node in make_nodes(spec, index):
            builder.add_node(name, node)
    builder.add_edge(START, spec.steps[0].id)
    for step_id, targets in edges(spec).items():
        possible = {target for _, target in targets}
        step = spec.steps_by_id[step_id]
        source = step_id
        if step.kind == "wait" and step.timed:
            resume_at = plan_segment(spec, step_id).resume_at
            builder.add_conditional_edges(step_id, route_of, {step_id + AWAIT: step_id + AWAIT, END: END})
            possible = {resume_at} if resume_at else set()
            source = step_id + AWAIT
        elif step.kind == "ask":
            # the send node either waits for the answer or, if the answer is already known, goes on
            builder.add_conditional_edges(step_id, route_of, {t: t for t in possible | {step_id + AWAIT}} | {END: END})
            source = step_id + AWAIT
            possible.add(step_id)  # re-ask after an invalid answer
        elif step.kind in ("wait", "chat"):
            builder.add_edge(step_id, step_id + AWAIT)
            source = step_id + AWAIT
        path_map = {target: target for target in possible} | {END: END}
        builder.add_conditional_edges(source, route_of, path_map)
    return builder.compile(checkpointer=checkpointer, name=spec.id)
