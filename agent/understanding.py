"""Typed results of the brain: what a turn means (structured) and what the runtime looked up for it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

FactKey = str  # a profile fact of the shop's vocabulary (profile.yaml), or budget / age
QUESTION_INTENTS = {"product_question", "recommendation", "comparison", "purchase_intent", "promotion", "live_schedule",
                    "order_status", "logistics", "shipping_time", "return_exchange", "price_protection", "invoice",
                    "shelf_life", "usage_order"}
INCIDENT_INTENTS = {"adverse_reaction", "damaged", "missing_item", "quality_issue"}
ORDER_INTENTS = {"order_status", "logistics"}
# a question about the state of something bought: not shipped, not delivered, refunded yet, received yet
ASKS_STATUS = re.compile(r"了没|了吗|[到了]没|没[发到退收]|还没[到发收退处动有好]|还不[到发退]|咋还|怎么还|啥情况|什么情况|"
                         r"进度|到哪|怎么样了|状态|"
                         r"单号|物流|快递|签收|发货|寄出|到账|被取消|怎么取消|取消了[吗没]")
# questions a shop answers with an FAQ entry or policy clause about that topic
TOPIC_INTENTS = {"invoice", "shelf_life", "usage_order", "live_schedule", "shipping_time", "return_exchange",
                 "price_protection"}


class Fact(BaseModel):
    key: FactKey
    value: str
    confidence: float = Field(default=0.8, ge=0, le=1)


class Understanding(BaseModel):
    """One structured-output unit: everything the runtime needs to decide, nothing it must trust blindly."""

    intent: str = Field(description="the main purpose of the message, one name of the intent vocabulary")
    confidence: float = Field(default=1.0, ge=0, le=1, description="how sure the classifier is of the intent")
    products: list[str] = Field(default_factory=list, description="product names or SKUs the customer mentions")
    order_no: str | None = Field(default=None, description="an order number written in the message, verbatim")
    codes: list[str] = Field(default_factory=list, description="ids written in the message (order, tracking, "
                             "product), normalised; resolved against this customer's data by the tools")
    phones: list[str] = Field(default_factory=list, description="mobile numbers (never read as order ids)")
    links: list[str] = Field(default_factory=list, description="URLs in the message")
    constraints: list[str] = Field(default_factory=list, description="contraindication labels the customer "
                                   "mentions for this turn (孕期, 敏感肌); recommendations never violate them")
    facts: list[Fact] = Field(default_factory=list, description="profile facts the customer states about themself")
    tags: list[str] = Field(default_factory=list, description="tags from the operator's taxonomy only")
    sentiment: Literal["positive", "neutral", "negative"] = "neutral"
    needs_human: bool = False
    is_question: bool = False
    also: list[str] = Field(default_factory=list, description="other intents a clause of the message states "
                            "(\"别问了，直接推荐\": stop_asking besides recommendation)")
    clauses: dict[str, str] = Field(default_factory=dict, description="the clause that states each of ``also``")
    normalised: str = ""


@dataclass
class Facts:
    """What the runtime's customer-bound tools found for a turn; replies may quote only these."""

    products: list[dict[str, Any]] = field(default_factory=list)
    order: dict[str, Any] | None = None
    shipment: dict[str, Any] | None = None
    orders: list[dict[str, Any]] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    refused: str | None = None
    shipments: list[dict[str, Any]] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    missing_product: str | None = None  # a model code or product the shop does not carry
    candidates: list[dict[str, Any]] = field(default_factory=list)  # near products when none was named
    excluded: list[dict[str, Any]] = field(default_factory=list)  # left out for a contraindication
    unmatched_item: str | None = None  # a product the customer says they bought that none of their orders holds

    def as_prompt(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class TurnInput:
    """What the brain sees of one turn. The customer id is deliberately absent."""

    text: str
    name: str
    tags: tuple[str, ...]
    taxonomy: tuple[str, ...]
    memory: str = ""
    remembered_products: tuple[str, ...] = ()
    pending_question: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    facts: dict[str, str] = field(default_factory=dict)  # current profile facts (skin_type, budget, pregnant…)


class Reply(BaseModel):
    text: str
    grounded: bool = Field(description="the reply answers from looked-up facts (False: could not answer)")
    offer_human: bool = False
    follow_up: str | None = Field(default=None, description="a follow-up the reply promises: becomes a task")
