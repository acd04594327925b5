"""The injected dependencies of the SOP engine: one object built at start-up, passed everywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.engine import Engine

from knowledge.clock import Clock, ShopTime
from knowledge.settings import Settings
from sop_graphs.channel import Channel
from sop_graphs.loader import Library
from sop_graphs.policy import ContactPolicy

Origin = Literal["customer", "timer", "system"]


@dataclass
class Deps:
    """Settings, database, clock, SOP library, contact policy and outbound channel."""

    settings: Settings
    engine: Engine
    clock: Clock
    library: Library
    channel: Channel
    shop: ShopTime = field(init=False)
    policy: ContactPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.shop = ShopTime(self.settings.shop_timezone)
        self.policy = ContactPolicy(self.settings, self.shop)


@dataclass(frozen=True)
class RunContext:
    """LangGraph runtime context of one graph invocation: the deps and why the graph is running."""

    deps: Deps
    origin: Origin
