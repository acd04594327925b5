"""Typed results of the brain: what a turn means (structured) and what the runtime looked up for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

Intent = Literal["greeting", "product_question", "recommendation", "order_status", "logistics", "return_exchange",
                 "price_protection", "promotion", "complaint", "human", "unsubscribe", "thanks", "bye",
                 "purchase_intent", "chitchat", "unknown"]
FactKey = Literal["skin_type", "concern", "budget", "age", "gender", "city", "pregnant", "birthday"]
QUESTION_INTENTS = {"product_question", "recommendation", "order_status", "logistics", "return_exchange",
                    "price_protection", "promotion"}


class Fact(BaseModel):
    key: FactKey
    value: str
    confidence: float = Field(default=0.8, ge=0, le=1)


class Understanding(BaseModel):
    """One structured-output unit: everything the runtime needs to decide, nothing it must trust blindly."""

    intent: Intent = Field(description="the main purpose of the message")
    products: list[str] = Field(default_factory=list, description="product names or SKUs the customer mentions")
    order_no: str | None = Field(default=None, description="an order number written in the message, verbatim")
    facts: list[Fact] = Field(default_factory=list, description="profile facts the customer states about themself")
    tags: list[str] = Field(default_factory=list, description="tags from the operator's taxonomy only")
    sentiment: Literal["positive", "neutral", "negative"] = "neutral"
    needs_human: bool = False
    is_question: bool = False


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


class Reply(BaseModel):
    text: str
    grounded: bool = Field(description="the reply answers from looked-up facts (False: could not answer)")
    offer_human: bool = False
