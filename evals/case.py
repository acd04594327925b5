"""The transcript case format (see evals/README.md): an initial world, a timeline of steps, assertions.

A YAML file holds one case (a mapping) or several (``cases: [...]``). Assertions are one-key mappings
(``- reply_contains: [¥199]``) checked after a step (``expect:``), by a ``check:`` step, or at the end.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from knowledge.yaml_lines import YamlError, load_yaml

ASSERTIONS = {
    "reply_contains", "reply_not_contains", "reply_any", "no_reply", "sop", "not_enrolled", "slot", "fact", "tags",
    "stage", "coupon", "handoff", "task", "sends", "mode_used", "quiet_hours_respected", "cap_respected",
    "tool_called", "tool_not_called", "state", "state_hash", "unsubscribed", "bot_paused",
}
_WAIT = re.compile(r"^\+(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d{1,2}):(\d{2}))?$")


def _assertions(value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    for item in value or []:
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ASSERTIONS:
            raise ValueError(f"assertion {item!r} is not one of: {', '.join(sorted(ASSERTIONS))}")
    return value


class CaseError(ValueError):
    """A case file that cannot be read; names the file and the problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorldCustomer(Strict):
    id: str
    name: str = "客户"
    added: bool = Field(default=True, description="fire customer_added at the start (SOP triggers run)")
    channel_code: str | None = None
    owner: str = "advisor_01"
    tags: list[str] = Field(default_factory=list)
    stage: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class World(Strict):
    shop: str | None = Field(default=None, description="a bundled shop directory under knowledge/ (e.g. tea_shop); "
                             "default the skincare demo shop")
    start: str = Field(default="2026-11-23 10:00", description="shop-local time the case starts")
    customers: list[WorldCustomer] = Field(default_factory=lambda: [WorldCustomer(id="c1", name="小林")])
    sops: Literal["all"] | list[str] = Field(default="all", description="enabled SOPs; others are disabled")
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides, e.g. daily cap")
    orders: list[dict[str, Any]] = Field(default_factory=list, description="extra orders (demo shop is loaded)")
    shipments: list[dict[str, Any]] = Field(default_factory=list)


class Step(Strict):
    say: str | list[str] | None = Field(default=None, description="a message, or a burst of messages")
    customer: str | None = None
    wait: str | None = Field(default=None, description='"+3h", "+2d", "+2d 10:00" (day jump, then shop time)')
    event: dict[str, Any] | None = Field(default=None, description="{kind: purchased|delivered|visit|...}")
    check: list[dict[str, Any]] | None = None
    expect: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def one_action(self) -> Step:
        actions = [x for x in (self.say, self.wait, self.event, self.check) if x is not None]
        if len(actions) != 1:
            raise ValueError("a step has exactly one of say, wait, event, check")
        if self.wait is not None and not _WAIT.match(self.wait.strip()):
            raise ValueError(f"wait {self.wait!r} is not like +3h, +2d, +2d 10:00")
        return self

    @field_validator("check", "expect")
    @classmethod
    def known_assertions(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        return _assertions(value)


class Case(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    tags: list[str] = Field(default_factory=list)
    world: World = Field(default_factory=World)
    steps: list[Step]
    expect: list[dict[str, Any]] = Field(default_factory=list)
    file: str = ""

    @field_validator("expect")
    @classmethod
    def known_assertions(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _assertions(value) or []


def parse_wait(text: str) -> tuple[timedelta, tuple[int, int] | None]:
    """``+2d 10:00`` → (2 days, (10, 0)); the time of day, if any, is applied after the jump."""
    m = _WAIT.match(text.strip())
    if m is None:
        raise ValueError(text)
    days, hours, minutes, hh, mm = m.groups()
    delta = timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0))
    return delta, (int(hh), int(mm)) if hh is not None else None


def load_cases(paths: list[Path]) -> list[Case]:
    """Every case under ``paths`` (files or directories), with ids checked for uniqueness."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            data = load_yaml(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseError(f"{file}: cannot read: {exc}") from exc
        except YamlError as exc:
            raise CaseError(f"{file}:{exc.line}: invalid YAML: {exc.reason}") from exc
        items = data.get("cases") if isinstance(data, dict) and "cases" in data else [data]
        for index, item in enumerate(items or []):
            if not isinstance(item, dict):
                raise CaseError(f"{file}: case #{index + 1} is not a mapping")
            try:
                case = Case.model_validate({**item, "file": str(file)})
            except ValidationError as exc:
                where = item.get("id", f"#{index + 1}")
                raise CaseError(f"{file}: case {where}: " + "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from exc
            if case.id in seen:
                raise CaseError(f"{file}: duplicate case id {case.id!r} (first in {seen[case.id]})")
            seen[case.id] = str(file)
            cases.append(case)
    return cases
