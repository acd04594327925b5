"""Semantic checks across an SOP and its catalog: references, reachability, loops, content, timing.

Every problem is reported (not just the first) with file:line, the SOP/step and a plain reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from croniter import croniter

from sop_graphs.expr import ExprError, parse_condition
from sop_graphs.loader import Library, Problem, SopSource
from sop_graphs.render import bundled_replies, placeholders, variables_for
from sop_graphs.spec import (
    AskStep,
    BranchStep,
    Catalog,
    ChatStep,
    CouponStep,
    CustomerAddedTrigger,
    EndStep,
    GroupInviteStep,
    IntentTrigger,
    MessageStep,
    ScheduleTrigger,
    SopSpec,
    TagStep,
    TagTrigger,
    WaitStep,
)

_MODE_TOUCHPOINT = {"kf": "private", "welcome": "private", "member_task": "private",
                    "group_task": "group", "moment_task": "moments"}


def edges(spec: SopSpec) -> dict[str, list[tuple[str, str]]]:
    """Outgoing (label, target) edges of every step, as the compiler wires them."""
    out: dict[str, list[tuple[str, str]]] = {}
    for index, step in enumerate(spec.steps):
        targets: list[tuple[str, str]] = []
        follow = spec.successor(index)
        if isinstance(step, BranchStep):
            targets = [(case.when, case.goto) for case in step.cases] + [("否则", step.default)]
        elif isinstance(step, EndStep):
            targets = []
        else:
            if follow:
                targets.append(("", follow))
            if isinstance(step, AskStep):
                if step.on_timeout and step.on_timeout != follow:
                    targets.append(("超时", step.on_timeout))
                if step.on_invalid and step.on_invalid != follow:
                    targets.append(("无效", step.on_invalid))
            if isinstance(step, WaitStep) and step.on_timeout and step.on_timeout != follow:
                targets.append(("超时", step.on_timeout))
        out[step.id] = targets
    return out


def validate(library: Library) -> list[Problem]:
    """All semantic problems of every SOP in ``library``."""
    problems: list[Problem] = catalog_problems(library.catalog)
    for sop_id, spec in library.sops.items():
        problems.extend(_validate_sop(spec, library.sources[sop_id], library))
    return sorted(problems)


def _validate_sop(spec: SopSpec, src: SopSource, library: Library) -> Iterator[Problem]:
    def problem(reason: str, *loc: str | int, step: str | None = None) -> Problem:
        return Problem(src.file, src.line(*loc), f"{spec.id}/{step}" if step else spec.id, reason)

    catalog = library.catalog
    index_of: dict[str, int] = {}
    for index, step in enumerate(spec.steps):
        if step.id in index_of:
            yield problem(f"duplicate step id {step.id!r} (first at step {index_of[step.id] + 1})",
                          "steps", index, "id", step=step.id)
        else:
            index_of[step.id] = index

    graph = edges(spec)
    for step_id, targets in graph.items():
        for label, target in targets:
            if target not in index_of:
                field_name = "goto" if label not in ("", "超时", "无效") else "next"
                yield problem(f"unknown step {target!r}", "steps", index_of[step_id], field_name, step=step_id)

    reachable = _reachable(spec.steps[0].id, graph)
    for step in spec.steps:
        if step.id not in reachable:
            yield problem("unreachable: no path from the first step leads here", "steps", index_of[step.id],
                          step=step.id)

    for cycle in _loops_without_pause(spec, graph):
        first = cycle[0]
        yield problem(f"loop with no wait or ask: {' -> '.join([*cycle, first])}", "steps", index_of[first],
                      step=first)

    for index, step in enumerate(spec.steps):
        yield from _check_step(spec, step, index, catalog, library, problem)

    for index, trigger in enumerate(spec.triggers):
        if isinstance(trigger, ScheduleTrigger) and not croniter.is_valid(trigger.cron):
            yield problem(f"bad schedule expression {trigger.cron!r}", "triggers", index, "cron")
        if isinstance(trigger, TagTrigger) and trigger.tag not in catalog.tags:
            yield problem(f"unknown tag {trigger.tag!r}", "triggers", index, "tag")
        if isinstance(trigger, IntentTrigger):
            for i, intent in enumerate(trigger.intents):
                if intent not in catalog.intents.names:
                    yield problem(f"unknown intent {intent!r}{_did_you_mean(intent, catalog.intents.names)}",
                                  "triggers", index, "intents", i)
    for index, step in enumerate(spec.steps):
        if isinstance(step, ChatStep):
            for i, intent in enumerate(step.until_intents):
                if intent not in catalog.intents.names:
                    yield problem(f"unknown intent {intent!r}{_did_you_mean(intent, catalog.intents.names)}",
                                  "steps", index, "until_intents", i, step=step.id)

    audience = spec.audience
    for key in ("tags_all", "tags_any", "tags_none"):
        for i, tag in enumerate(getattr(audience, key)):
            if tag not in catalog.tags:
                yield problem(f"unknown tag {tag!r}", "audience", key, i)
    for i, cond in enumerate(spec.exit.when):
        if cond.tag and cond.tag not in catalog.tags:
            yield problem(f"unknown tag {cond.tag!r}", "exit", "when", i)
    yield from _check_outcome(spec.exit, ("exit",), catalog, library, problem)


def _did_you_mean(word: str, known: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def catalog_problems(catalog: Catalog) -> list[Problem]:
    """Tag rules naming intents outside the vocabulary (reported against tags.yaml), 话术 templates that are not
    plain ``{name}`` placeholders, intents replying with an unknown template."""
    problems = []
    for group_id, group in catalog.tag_groups.items():
        for rule in group.rules:
            for intent in rule.intents:
                if intent not in catalog.intents.names:
                    problems.append(Problem("tags.yaml", 1, group_id,
                                            f"rule for {rule.tag!r} names unknown intent {intent!r}"
                                            f"{_did_you_mean(intent, catalog.intents.names)}"))
    for name, text in catalog.replies.items():
        try:
            placeholders(text)
        except ValueError as exc:
            problems.append(Problem("replies.yaml", 1, name, f"bad template: {exc}"))
    for name, entry in catalog.intents.intents.items():
        if entry.reply and entry.reply not in catalog.replies and entry.reply not in bundled_replies():
            problems.append(Problem("intents.yaml", 1, name, f"reply names unknown template {entry.reply!r}"
                                    f"{_did_you_mean(entry.reply, set(catalog.replies) | set(bundled_replies()))}"))
    return problems


def _check_outcome(outcome, loc, catalog: Catalog, library: Library, problem, step=None) -> Iterator[Problem]:
    for key in ("add_tags", "remove_tags"):
        for i, tag in enumerate(getattr(outcome, key)):
            if tag not in catalog.tags:
                yield problem(f"unknown tag {tag!r}", *loc, key, i, step=step)
    if outcome.switch_to and outcome.switch_to not in library.sops:
        yield problem(f"switch_to names unknown SOP {outcome.switch_to!r}", *loc, "switch_to", step=step)


def _check_step(spec, step, index, catalog: Catalog, library: Library, problem) -> Iterator[Problem]:
    loc = ("steps", index)
    sid = step.id
    texts: list[tuple[str, tuple[str | int, ...]]] = []
    if isinstance(step, MessageStep):
        if step.material is not None and step.material not in catalog.materials:
            yield problem(f"unknown material {step.material!r}", *loc, "material", step=sid)
        elif step.material is not None:
            texts.append((catalog.materials[step.material].text, (*loc, "material")))
        if step.text is not None:
            texts.append((step.text, (*loc, "text")))
        for i, variant in enumerate(step.variants):
            for tag in [*variant.tags_any, *variant.tags_all]:
                if tag not in catalog.tags:
                    yield problem(f"unknown tag {tag!r} in variant", *loc, "variants", i, step=sid)
            if variant.material is not None and variant.material not in catalog.materials:
                yield problem(f"unknown material {variant.material!r}", *loc, "variants", i, "material", step=sid)
            elif variant.material is not None:
                texts.append((catalog.materials[variant.material].text, (*loc, "variants", i, "material")))
            if variant.text is not None:
                texts.append((variant.text, (*loc, "variants", i, "text")))
    if isinstance(step, AskStep):
        texts.append((step.question, (*loc, "question")))
        for i, option in enumerate(step.answer.options):
            for tag in option.tags:
                if tag not in catalog.tags:
                    yield problem(f"unknown tag {tag!r} on choice {option.value!r}", *loc, "answer", "options", i,
                                  step=sid)
    if isinstance(step, GroupInviteStep):
        if step.group not in catalog.groups:
            yield problem(f"unknown group {step.group!r}", *loc, "group", step=sid)
        texts.append((step.text, (*loc, "text")))
    if isinstance(step, CouponStep):
        if step.campaign not in catalog.campaigns:
            yield problem(f"unknown coupon campaign {step.campaign!r}", *loc, "campaign", step=sid)
        texts.append((step.text, (*loc, "text")))
    if isinstance(step, TagStep):
        for key in ("add", "remove"):
            for i, tag in enumerate(getattr(step, key)):
                if tag not in catalog.tags:
                    yield problem(f"unknown tag {tag!r}", *loc, key, i, step=sid)
    if isinstance(step, BranchStep):
        for i, case in enumerate(step.cases):
            try:
                condition = parse_condition(case.when)
            except ExprError as exc:
                yield problem(str(exc), *loc, "cases", i, "when", step=sid)
                continue
            for tag in sorted(condition.tag_literals - catalog.tags):
                yield problem(f"unknown tag {tag!r} in condition", *loc, "cases", i, "when", step=sid)
            slots = {s.slot for s in spec.steps if isinstance(s, AskStep)}
            for record, name in sorted(condition.fields):
                if record == "answers" and name not in slots:
                    yield problem(f"answers.{name} is not asked by any step of this SOP", *loc, "cases", i,
                                  "when", step=sid)
    if isinstance(step, EndStep):
        yield from _check_outcome(step.outcome, (*loc, "outcome"), catalog, library, problem, step=sid)
    if isinstance(step, WaitStep) and step.day is not None and not any(
        isinstance(t, CustomerAddedTrigger) for t in spec.triggers
    ):
        yield problem("'day N' waits count from the add date; use them in SOPs triggered by customer_added",
                      *loc, "day", step=sid)
    for text, text_loc in texts:
        try:
            allowed = variables_for(step.kind)
            unknown = placeholders(text) - allowed
        except ValueError as exc:
            yield problem(f"bad template: {exc}", *text_loc, step=sid)
            continue
        for name in sorted(unknown):
            yield problem(f"variable {{{name}}} is not available in a {step.kind} step; available: "
                          f"{', '.join(sorted(allowed))}", *text_loc, step=sid)
    yield from _check_delivery(spec, step, index, problem)


def _check_delivery(spec: SopSpec, step, index: int, problem) -> Iterator[Problem]:
    if not hasattr(step, "mode"):
        return
    mode = step.mode or spec.defaults.mode
    touchpoint = step.touchpoint or spec.defaults.touchpoint
    executor = step.executor or spec.defaults.executor
    loc = ("steps", index)
    if _MODE_TOUCHPOINT[mode] != touchpoint:
        yield problem(f"mode {mode} delivers to {_MODE_TOUCHPOINT[mode]}, not {touchpoint}", *loc, step=step.id)
    if executor is not None and (executor == "ai") != (mode in ("kf", "welcome")):
        yield problem(f"mode {mode} is sent by {'the AI' if mode in ('kf', 'welcome') else 'a human employee'},"
                      f" not executor {executor}", *loc, step=step.id)
    if isinstance(step, AskStep) and mode not in ("kf", "welcome"):
        yield problem("an ask needs a conversational mode (kf or welcome) so the answer comes back to the agent",
                      *loc, step=step.id)
    if mode == "welcome":
        if not any(isinstance(t, CustomerAddedTrigger) for t in spec.triggers):
            yield problem("welcome mode is only for SOPs triggered by customer_added", *loc, step=step.id)
        if any(isinstance(s, WaitStep | AskStep) for s in spec.steps[:index]):
            yield problem("welcome mode must come before any wait or ask (WeCom allows it within 20 s of adding)",
                          *loc, step=step.id)


def _reachable(start: str, graph: dict[str, list[tuple[str, str]]]) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for _, target in graph.get(stack.pop(), []):
            if target in graph and target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _loops_without_pause(spec: SopSpec, graph: dict[str, list[tuple[str, str]]]) -> list[list[str]]:
    """Strongly connected components (Tarjan) of the non-waiting steps that contain a cycle."""
    pausing = {s.id for s in spec.steps if isinstance(s, WaitStep | AskStep)}
    nodes = [n for n in graph if n not in pausing]
    sub = {n: [t for _, t in graph[n] if t in graph and t not in pausing] for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sub[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in sub[node]:
                found.append(list(reversed(component)))

    for node in nodes:
        if node not in index:
            connect(node)
    return found
