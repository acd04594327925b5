"""The LLM brain: langchain-openai ``ChatOpenAI`` on any OpenAI-compatible endpoint.

Per turn exactly two calls: one structured-output call for understanding, one grounded reply.

Every way the endpoint can fail ends in :class:`BrainUnavailable`, and nothing else leaves the brain
(the conversation then falls back to the offline brain). What each failure is, as measured against a
fake endpoint (openai 3.x, langchain-openai 1.x; see tests/agent/test_llm_brain.py):

=====================================  ===============================================  =========
response                               raised by the SDK                                retried
=====================================  ===============================================  =========
429                                    ``openai.RateLimitError``                        yes
5xx (JSON or HTML body)                ``openai.InternalServerError``                   yes
timeout / connection refused           ``openai.APITimeoutError`` / ``APIConnectionError``  yes
other 4xx (400, 401, 403, 404, 422…)   ``openai.APIStatusError`` subclasses             no
200, HTML or other non-JSON body       ``ValueError`` (langchain: "Unexpected response  yes
                                       type"), ``json.JSONDecodeError`` when the HTML
                                       claims to be JSON
200, ``choices: []``                   ``IndexError``                                   yes
200, ``choices`` missing / not a list  ``TypeError``                                    yes
200, ``message: null`` / a string      ``AttributeError``                               yes
content a number or an object          ``pydantic.ValidationError`` (AIMessage)         yes
content a list                         nothing: checked here (:class:`MalformedOutput`)  yes
content longer than the cap (5 MB)     nothing: checked here (:class:`MalformedOutput`)  yes
tool arguments not JSON                nothing (``None`` result): checked here          yes
tool arguments JSON of the wrong shape ``pydantic.ValidationError``                     yes
=====================================  ===============================================  =========

``openai.APIResponseValidationError`` (strict response validation) and ``OutputParserException`` are
handled the same way. Transient and malformed responses are retried by the one tenacity policy; a
client error (4xx other than 429) would fail the same way again, so it is not.

A reply is then checked by :mod:`agent.guardrails` (amounts, promised coupons, tags and refunds, length);
one the facts do not back raises :class:`ReplyRejected` (a :class:`BrainUnavailable` that is not an
outage). The model's structured understanding may set only tags of ``model_settable`` taxonomy groups
and well-typed facts within range.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import numpy as np
import openai
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.wait import WaitBaseT

from agent import guardrails, prompts
from agent.brain import BrainUnavailable, ReplyRejected
from agent.understanding import QUESTION_INTENTS, Facts, Reply, TurnInput, Understanding
from knowledge.settings import Settings
from sop_graphs.spec import Catalog

T = TypeVar("T")


class MalformedOutput(ValueError):
    """The endpoint answered 200 with something that is not a usable completion."""


# the endpoint is overloaded or unreachable: try again
TRANSIENT: tuple[type[BaseException], ...] = (openai.RateLimitError, openai.APITimeoutError,
                                              openai.APIConnectionError, openai.InternalServerError)
# a 200 whose body the SDK or we could not turn into a completion: try again. ValueError covers
# json.JSONDecodeError, langchain's "Unexpected response type" and MalformedOutput; LookupError covers
# IndexError (choices: []) and KeyError; TypeError/AttributeError come from parsing a null or mistyped field.
MALFORMED: tuple[type[BaseException], ...] = (openai.APIResponseValidationError, OutputParserException, ValidationError,
                                              ValueError, LookupError, TypeError, AttributeError)
RETRYABLE = TRANSIENT + MALFORMED
# everything else the SDK raises (4xx other than 429, an unexpected status): not retried
FAILURES: tuple[type[BaseException], ...] = (openai.OpenAIError, *MALFORMED)


def _structured(schema: type[T], result: Any) -> T:
    """A structured-output result (``include_raw``: the raw message, the parsed value or why parsing failed) as
    ``schema``; a parse failure is raised as itself, so it takes the retry and fallback path."""
    if isinstance(result, dict) and "parsed" in result:
        error = result.get("parsing_error")
        if isinstance(error, BaseException):
            raise error
        if error is not None:
            raise OutputParserException(str(error)[:300])
        result = result["parsed"]
    if result is None:
        raise OutputParserException("the model returned no structured output")
    return result if isinstance(result, schema) else schema.model_validate(result)  # type: ignore[attr-defined]


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
        self.structured = self.chat.with_structured_output(Understanding, method="function_calling", include_raw=True)
        self.attempts = settings.llm_max_attempts
        self.wait = wait or wait_exponential(multiplier=0.5, max=4)
        self.max_chars = settings.llm_reply_max_chars
        self.budget = (settings.llm_budget_min, settings.llm_budget_max)
        self.calls = 0
        self._usage = threading.local()  # calls and tokens of this thread since take_usage (one turn's draft)

    def take_usage(self) -> tuple[int, int]:
        """(calls, tokens) this thread made since the last look: a turn's draft runs on one thread."""
        calls, tokens = getattr(self._usage, "calls", 0), getattr(self._usage, "tokens", 0)
        self._usage.calls = self._usage.tokens = 0
        return calls, tokens

    def _count(self, result: Any) -> None:
        raw = result.get("raw") if isinstance(result, dict) else result
        usage = getattr(raw, "usage_metadata", None) or {}
        self._usage.tokens = getattr(self._usage, "tokens", 0) + int(usage.get("total_tokens") or 0)

    def _call(self, fn: Callable[[list[BaseMessage]], Any], messages: list[BaseMessage],
              parse: Callable[[Any], T]) -> T:
        """``parse(fn(messages))`` under the retry policy; every failure becomes :class:`BrainUnavailable`."""
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self.wait,
                            retry=retry_if_exception(_retryable), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    self.calls += 1
                    self._usage.calls = getattr(self._usage, "calls", 0) + 1
                    result = fn(messages)
                    self._count(result)
                    return parse(result)
        except FAILURES as exc:
            raise BrainUnavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        raise BrainUnavailable("no attempt was made")  # pragma: no cover - Retrying always attempts once

    def ask(self, schema: type[T], system: str, user: str) -> T:
        """Another typed unit (e.g. the daily report's narrative): structured output under the same retry policy;
        every failure becomes :class:`BrainUnavailable`."""
        runnable = self.chat.with_structured_output(schema, method="function_calling", include_raw=True)
        return self._call(runnable.invoke, [SystemMessage(system), HumanMessage(user)],
                          lambda result: _structured(schema, result))

    @staticmethod
    def _understanding(result: Any) -> Understanding:
        return _structured(Understanding, result)

    def _text(self, message: Any) -> str:
        content = getattr(message, "content", None)
        if not isinstance(content, str):
            raise MalformedOutput(f"reply content is {type(content).__name__}, not text")
        if len(content) > self.max_chars:
            raise MalformedOutput(f"reply of {len(content)} characters (at most {self.max_chars})")
        text = content.strip()
        if not text:
            raise MalformedOutput("the model returned an empty reply")
        return text

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None,
                   routed: Understanding | None = None) -> Understanding:
        """The model's reading, merged over the router's: rule overrides, ids and vocabulary stay the router's."""
        pending = f"客户正在回答的问题：{turn.pending_question}" if turn.pending_question else ""
        names = sorted(self.catalog.intents.names - set(self.catalog.intents.groups))
        settable = sorted(guardrails.model_settable_tags(self.catalog) & set(turn.taxonomy))
        system = prompts.UNDERSTAND.format(taxonomy="、".join(settable) or "无（不要选标签）",
                                           tags="、".join(turn.tags) or "无", memory=turn.memory or "无",
                                           pending=pending, intents="、".join(names))
        model = self._call(self.structured.invoke, [SystemMessage(system), HumanMessage(turn.text)],
                           self._understanding)
        tags = [t for t in model.tags if t in settable]  # operational tags are the rules' alone
        facts = guardrails.model_facts(model.facts, self.catalog, budget=self.budget)
        model = model.model_copy(update={"tags": tags, "facts": facts})
        if routed is None:
            return model
        return merge_understanding(routed, model, self.catalog, tags)

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        if facts.refused:  # a refusal is decided by the runtime, not phrased by the model
            return Reply(text=facts.refused, grounded=True)
        looked_up = facts.as_prompt()
        known = json.dumps(looked_up, ensure_ascii=False, default=str)
        persona = self.catalog.persona
        system = prompts.REPLY.format(name=turn.name or "您", memory=turn.memory or "无", facts=known,
                                      brand=persona.brand, advisor=persona.advisor_title, tone=persona.tone)
        text = self._call(self.chat.invoke, [SystemMessage(system), HumanMessage(turn.text)], self._text)
        violations = guardrails.check_reply(text, looked_up, max_chars=self.max_chars)
        if violations:
            raise ReplyRejected("reply not backed by the facts: " + "; ".join(str(v) for v in violations))
        grounded = bool(looked_up) or understanding.intent not in QUESTION_INTENTS
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
