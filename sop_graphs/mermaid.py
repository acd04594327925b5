"""Renders an SOP as a Mermaid flowchart for operators."""

from __future__ import annotations

from sop_graphs.spec import SopSpec
from sop_graphs.validator import edges

_SHAPES = {"ask": ("{{", "}}"), "branch": ("{", "}"), "wait": ("([", "])"), "end": ("((", "))"),
           "handoff": ("[/", "/]")}


def _label(step) -> str:
    detail = {
        "message": lambda s: s.material or (s.text or "")[:16],
        "ask": lambda s: f"问 {s.slot}",
        "group_invite": lambda s: f"邀请入群 {s.group}",
        "coupon": lambda s: f"发券 {s.campaign}",
        "tag": lambda s: " ".join([*(f"+{t}" for t in s.add), *(f"-{t}" for t in s.remove)]),
        "wait": lambda s: (f"等待 {s.for_}" if s.for_ else f"第{s.day}天 {s.at or ''}" if s.day is not None
                           else f"{s.weekday or ''} {s.at or ''}" if s.at else f"等待事件 {s.until_event}"),
        "branch": lambda s: s.label or "分支",
        "handoff": lambda s: f"人工：{s.assignee_role}",
        "chat": lambda s: "自由对话",
        "end": lambda s: "结束",
    }[step.kind](step)
    mode = getattr(step, "mode", None)
    return f"{step.id}<br/>{detail}".replace('"', "'") + (f"<br/>[{mode}]" if mode else "")


def to_mermaid(spec: SopSpec) -> str:
    """``flowchart TD`` text with one node per step and labelled edges."""
    lines = ["flowchart TD", f'    start(["{spec.name}"]) --> {spec.steps[0].id}']
    for step in spec.steps:
        left, right = _SHAPES.get(step.kind, ("[", "]"))
        lines.append(f'    {step.id}{left}"{_label(step)}"{right}')
    for source, targets in edges(spec).items():
        for label, target in targets:
            text = label.replace('"', "'")
            lines.append(f'    {source} -->|"{text}"| {target}' if text else f"    {source} --> {target}")
    return "\n".join(lines) + "\n"
