"""Shop knowledge that is data, not code: intent examples, profile vocabulary, persona and 话术.

Each lives in the library directory beside the SOPs (``intents.yaml``, ``profile.yaml``,
``persona.yaml``, ``replies.yaml``), so a shop of another category changes files, not Python.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Intents the runtime acts on by name (handoffs, incidents, questionnaire control, opt-out). A shop's
# intents.yaml adds examples for these and may add intents of its own; SOP triggers may name any of them.
SYSTEM_INTENTS: tuple[str, ...] = (
    "greeting", "smalltalk", "thanks", "bye", "product_question", "recommendation", "comparison",
    "purchase_intent", "promotion", "live_schedule", "order_status", "logistics", "shipping_time",
    "return_exchange", "price_protection", "invoice", "shelf_life", "usage_order", "complaint",
    "adverse_reaction", "damaged", "missing_item", "quality_issue", "abuse", "human", "unsubscribe",
    "stop_asking", "hold_on", "repeat_question", "unknown")
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "product_interest": ("product_question", "recommendation", "comparison", "purchase_intent"),
    "complaint": ("complaint", "adverse_reaction", "damaged", "missing_item", "quality_issue"),
}


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntentEntry(_Data):
    description: str = ""
    examples: list[str] = Field(default_factory=list)
    reply: str | None = Field(default=None, description=(
        "a 话术 template of replies.yaml that answers this intent by itself (an operator's own intent needs no code)"))

    @field_validator("examples", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        return [str(v) for v in value] if isinstance(value, list) else value


class IntentBook(_Data):
    """The intent vocabulary of a shop: names, groups and the labelled examples the classifier learns from."""

    groups: dict[str, list[str]] = Field(default_factory=dict)
    intents: dict[str, IntentEntry] = Field(default_factory=dict)
    product_words: list[str] = Field(default_factory=list, description=(
        "words that name a product; an example containing one is also learned with others in its place, so "
        "which product a message names never decides what it asks"))

    @model_validator(mode="after")
    def _groups_name_intents(self) -> IntentBook:
        known = set(self.intents) | set(SYSTEM_INTENTS)
        for group, members in self.groups.items():
            unknown = [m for m in members if m not in known]
            if unknown:
                raise ValueError(f"group {group!r} names unknown intents: {', '.join(unknown)}")
        return self

    @property
    def names(self) -> set[str]:
        """Every intent a trigger or rule may name: system intents, the shop's own, and groups."""
        return set(SYSTEM_INTENTS) | set(self.intents) | set(self.groups) | set(DEFAULT_GROUPS)

    def groups_of(self, intent: str) -> set[str]:
        groups = {**DEFAULT_GROUPS, **{k: tuple(v) for k, v in self.groups.items()}}
        return {name for name, members in groups.items() if intent in members}


class FactValue(_Data):
    """One value of a profile fact and the ways shoppers say it."""

    synonyms: list[str] = Field(default_factory=list, description="words that name it (matched after normalising)")
    patterns: list[str] = Field(default_factory=list, description="regexes for descriptions (T区油两颊干 → 混合皮)")
    description: str = ""
    contraindication: str | None = Field(default=None, description="products listing this label never suit them")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
        return value


class FactVocabulary(_Data):
    label: str
    exclusive: bool = True
    requires_self: bool = Field(default=False, description="only when the customer speaks of themself (我…)")
    values: dict[str, FactValue] = Field(default_factory=dict)


class ProfileVocabulary(_Data):
    """Profile facts this shop keeps (肤质, 诉求 … or 茶类偏好, 宝宝月龄 …) and how shoppers express them."""

    facts: dict[str, FactVocabulary] = Field(default_factory=dict)


class Persona(_Data):
    """Who answers: the brand, the advisor's title and name, and the tone the LLM is asked to keep."""

    brand: str = "本店"
    advisor_title: str = "顾问"
    advisor_name: str = ""
    tone: str = "亲切、简洁、专业"
    category: str = "商品"
