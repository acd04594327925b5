"""The LLM brain: langchain-openai ``ChatOpenAI`` on any OpenAI-compatible endpoint.

Per turn exactly two calls: one structured-output call for understanding, one grounded reply.
One retry policy (tenacity) covers 429, 5xx, timeouts, connection errors and malformed output; when
it is exhausted the call raises :class:`BrainUnavailable` and the conversation falls back to the
offline brain and asks a human to review. A reply quoting a price that is not in the looked-up
facts is rejected the same way, so the model cannot invent one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import numpy as np
import openai
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.wait import WaitBaseT

from agent import prompts
from agent.brain import BrainUnavailable
from agent.understanding import QUESTION_INTENTS, Facts, Reply, TurnInput, Understanding
from knowledge.settings import Settings
from sop_graphs.spec import Catalog

RETRYABLE = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError,
             OutputParserException, ValidationError, json.JSONDecodeError)
_MONEY = re.compile(r"(?:¥|￥)\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*元")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE)


class LLMBrain:
    """Structured understanding + grounded reply; ``http_client`` makes the transport injectable."""

    name = "llm"

    def __init__(self, settings: Settings, http_client: httpx.Client | None = None,
                 wait: WaitBaseT | None = None, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or Catalog()
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-set"
        self.chat = ChatOpenAI(model=settings.llm_model, api_key=key, base_url=settings.openai_base_url,
                               timeout=settings.llm_timeout_seconds, max_retries=0, temperature=0.2,
                               http_client=http_client)
        self.structured = self.chat.with_structured_output(Understanding, method="function_calling")
        self.attempts = settings.llm_max_attempts
        self.wait = wait or wait_exponential(multiplier=0.5, max=4)
        self.calls = 0

    def _call(self, fn: Any, messages: list[Any]) -> Any:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self.wait,
                            retry=retry_if_exception(_retryable), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    self.calls += 1
                    result = fn(messages)
                    if result is None:
                        raise OutputParserException("the model returned no structured output")
                    return result
        except (openai.OpenAIError, *RETRYABLE) as exc:
            raise BrainUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise BrainUnavailable("no attempt was made")  # pragma: no cover - Retrying always attempts once

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None,
                   routed: Understanding | None = None) -> Understanding:
        """The model's reading, merged over the router's: rule overrides, ids and vocabulary stay the router's."""
        pending = f"客户正在回答的问题：{turn.pending_question}" if turn.pending_question else ""
        names = sorted(self.catalog.intents.names - set(self.catalog.intents.groups))
        system = prompts.UNDERSTAND.format(taxonomy="、".join(turn.taxonomy), tags="、".join(turn.tags) or "无",
                                           memory=turn.memory or "无", pending=pending, intents="、".join(names))
        result = self._call(self.structured.invoke, [SystemMessage(system), HumanMessage(turn.text)])
        model = result if isinstance(result, Understanding) else Understanding.model_validate(result)
        allowed = set(turn.taxonomy)
        tags = [t for t in model.tags if t in allowed]
        if routed is None:
            return model.model_copy(update={"tags": tags})
        return merge_understanding(routed, model, self.catalog, tags)

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        if facts.refused:  # a refusal is decided by the runtime, not phrased by the model
            return Reply(text=facts.refused, grounded=True)
        known = json.dumps(facts.as_prompt(), ensure_ascii=False, default=str)
        persona = self.catalog.persona
        system = prompts.REPLY.format(name=turn.name or "您", memory=turn.memory or "无", facts=known,
                                      brand=persona.brand, advisor=persona.advisor_title, tone=persona.tone)
        message = self._call(self.chat.invoke, [SystemMessage(system), HumanMessage(turn.text)])
        text = str(message.content).strip()
        if not text:
            raise BrainUnavailable("the model returned an empty reply")
        invented = [a or b for a, b in _MONEY.findall(text) if (a or b) not in known]
        if invented:
            raise BrainUnavailable(f"reply quoted amounts not in the facts: {invented}")
        grounded = bool(facts.as_prompt()) or understanding.intent not in QUESTION_INTENTS
        return Reply(text=text, grounded=grounded, offer_human=not grounded)


OVERRIDES = {"unsubscribe", "human"}


def merge_understanding(routed: Understanding, model: Understanding, catalog: Catalog, tags: list[str]) -> Understanding:
    """The model may refine the intent and add facts; the router's rule decisions, ids and constraints stand."""
    vocabulary = catalog.intents.names - set(catalog.intents.groups)
    intent = routed.intent if routed.intent in OVERRIDES or model.intent not in vocabulary else model.intent
    keys = set(catalog.profile.facts) | {"budget", "age"}
    facts = {f.key: f for f in [*model.facts, *routed.facts] if f.key in keys}  # the router's parse wins a tie
    return routed.model_copy(update={
        "intent": intent, "confidence": max(routed.confidence, 0.7), "facts": list(facts.values()),
        "tags": list(dict.fromkeys([*routed.tags, *tags])), "products": model.products,
        "sentiment": model.sentiment if routed.sentiment == "neutral" else routed.sentiment,
        "needs_human": routed.needs_human or model.needs_human or intent == "human",
        "is_question": routed.is_question or model.is_question})
