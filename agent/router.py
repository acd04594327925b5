"""The router: one ``Understanding`` per message, read by SOP triggers, slot filling, incidents and the reply.

Order: normalise → entities (ids, phones, links) → high-precision rule overrides (opt-out, an explicit
request for a human, an id in the text) → the intent classifier trained on the shop's examples →
profile facts from the shop's vocabulary and amounts. Nothing here reads customer data: ids are only
candidates, resolved later by tools bound to the channel's customer.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from agent.classifier import CONFIDENCE_FLOOR, UNKNOWN, IntentClassifier, classifier_for
from agent.understanding import INCIDENT_INTENTS, Fact, Understanding
from knowledge.amounts import DECLINE, parse_amount, to_number
from knowledge.embeddings import Embedder
from knowledge.text import normalise
from sop_graphs.policy import is_unsubscribe, opt_out_vetoed
from sop_graphs.spec import Catalog
from sop_graphs.vocabulary import match_values

_LINK = re.compile(r"https?://[^\s,，。]+|(?:www\.|m\.)?[a-z0-9-]+\.(?:com|cn|net)/[^\s,，。]*")
_PHONE = re.compile(r"(?<![0-9])(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?![0-9])")
# an id: optional letters then 6+ digits, spaces allowed between digit groups ("dd 2026 1100 07")
_CODE = re.compile(r"(?<![a-z0-9])([a-z]{0,4}(?:[\s-]?\d){6,26}[a-z]{0,2})(?![a-z0-9])")
_HUMAN = re.compile(r"转人工|转接人工|人工客服|人工服务|找人工|要人工|叫人工|接人工|^人工[!.~]*$|人工人工|真人|活人|"
                    r"客服电话|找你们(领导|负责人|经理)|\b(real|live) (person|agent|human)\b|\bhuman agent\b|"
                    r"talk to (a )?(human|person)")
# "不用转人工" declines one; "你是机器人还是真人" asks what we are (the classifier's bot_identity), not for one
_NOT_HUMAN = re.compile(r"(不用|不需要|不要|别|无需)(转)?人工|(你|对面|这)(是|到底是).{0,6}(真人|活人|人工|机器|ai|人是)|"
                        r"是不是(真人|机器人)|\bare you (a )?(bot|human|real)")
_QUESTION = re.compile(r"[?？吗呢]|[不没][?？!~]*$|多少|怎么|什么|啥|哪|几|能不能|有没有|可不可以|是不是|请问|帮我|麻烦|查一?下|看一?下|"
                       r"告诉我|想问|问下|问一下|推荐|\b(how|what|when|where|which|can|do|is)\b")
_BUDGET_CONTEXT = re.compile(r"预算|价位|以内|以下|之内|左右|上下|不超过|不到|出头|价格在|价钱在|块钱?以|元以|budget")
_AGE = re.compile(r"(?:我|本人|今年|已经)[^\d岁]{0,3}(\d{2}|[一二三四五六七八九十]{1,3})\s*岁|(\d{2})\s*岁了")
_SELF = re.compile(r"我|本人|自己|现在|目前|正在|刚|已经|宝妈|了")
_CLAUSE = re.compile(r"[,.!?;~，。！？；、\s]+")
CLAUSE_CONFIDENCE = 0.2
CLAUSE_LEAD = 3.0
_CONTROL_INTENTS = {"stop_asking", "hold_on", "unsubscribe", "human", "abuse"}
_WANTS = re.compile(r"想|要|需要|求|有没有|有啥|有什么|推荐|用什么|用啥|适合|怎么办|want|need|recommend")
_SELF_STATED = re.compile(r"我|本人|自己|脸|皮肤|肤质|想要|需要|改善|解决|老是|总是|容易|预算|价位")
# "我买的卸妆油怎么还没到": the customer's own purchase and its delivery, whatever product it names
_MY_PARCEL = re.compile(r"(我买的|我的|我那个|我那瓶|我那套|我下单的|我订的|我拍的|买的那个).{0,12}"
                        r"(到哪|还没到|没到|发了没|发货|发出|寄出|物流|快递|到了没|签收|派送|怎么还没)")
_ABOUT_A_PRODUCT = {"product_question", "purchase_intent", "comparison", "order_status", "logistics", "promotion",
                    "shipping_time", "return_exchange", "price_protection", "invoice", "shelf_life"}
_NEGATIVE = re.compile(r"生气|失望|太慢|怎么回事|差劲|无语|垃圾|坑|气死|离谱|过分|骗|吞|黑店|破店|什么破|烦死|受不了|"
                       r"服了|搞什么|催了|多少次|都多久了|等了.{0,4}[天周月]|一个礼拜|半个月|[?!]{2,}")
# intents an id in the text makes about an order unless the classifier already said something order-like
_KEEPS_ID = {"order_status", "logistics", "return_exchange", "price_protection", "invoice", "complaint", "human",
             "product_question", "comparison", "purchase_intent", "shipping_time", *INCIDENT_INTENTS}


def extract_ids(text: str) -> tuple[list[str], list[str], list[str]]:
    """(codes, phones, links) written in normalised ``text``; phones are never codes."""
    links = [m.group() for m in _LINK.finditer(text)]
    rest = _LINK.sub(" ", text)
    phones = ["".join(m.groups()) for m in _PHONE.finditer(rest)]
    rest = _PHONE.sub(" ", rest)
    codes = [re.sub(r"[\s-]", "", m.group(1)).upper() for m in _CODE.finditer(rest)]
    for link in links:  # product links carry the product id
        codes += [d for d in re.findall(r"\d{6,20}", link) if d not in codes]
    return list(dict.fromkeys(codes)), list(dict.fromkeys(phones)), links


_ID_LABEL = re.compile(r"(订单编号|订单号?|运单号?|快递单号?|物流单号?|单号|手机号|电话)\s*(是|为)?\s*[:：]?\s*\x00")


def without_ids(text: str) -> str:
    """``text`` with its links, phone numbers and ids taken out: what the classifier reads, so a 16-digit order
    number does not outweigh "不发热了" (the id is resolved on its own)."""
    rest = _CODE.sub(" \x00 ", _PHONE.sub(" \x00 ", _LINK.sub(" ", text)))
    rest = _ID_LABEL.sub(" ", rest).replace("\x00", " ")  # "订单3521…": the label goes with its id
    return re.sub(r"\s+", " ", rest).strip()


def names_a_product(intent: str, text: str) -> bool:
    """A question about a product or order, not about the customer: words in it are not profile answers."""
    return intent in _ABOUT_A_PRODUCT and not _SELF_STATED.search(text)


class Router:
    """Turns a message into one ``Understanding`` using the shop's intent book and profile vocabulary."""

    def __init__(self, catalog: Catalog, classifier: IntentClassifier | None = None,
                 embedder: Embedder | None = None, cache_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.embedder = embedder
        self.cache_dir = cache_dir
        self._classifier = classifier
        self._semantic = embedder if getattr(embedder, "semantic", False) else None
        self._typo_map = {normalise(k): normalise(v) for k, v in catalog.typos.items() if normalise(k)}
        self._typos = re.compile("|".join(map(re.escape, sorted(self._typo_map, key=len, reverse=True)))) \
            if self._typo_map else None

    @property
    def classifier(self) -> IntentClassifier | None:
        """Trained on first use (a worker that only sends scheduled steps never pays for it)."""
        if self._classifier is None:
            self._classifier = classifier_for(self.catalog.intents, self._semantic, self.cache_dir)
        return self._classifier

    def normalise(self, raw: str) -> str:
        """Normalised text with the shop's known misspellings corrected ("补水面摸" → 补水面膜, typos.yaml)."""
        text = normalise(raw)
        return self._typos.sub(lambda m: self._typo_map[m.group()], text) if self._typos is not None else text

    def vector(self, raw: str) -> np.ndarray | None:
        """The message's sentence vector (normalised text), shared by the classifier and retrieval."""
        text = self.normalise(raw)
        return self.embedder.query(text) if self.embedder is not None and text else None

    @staticmethod
    def rule_intent(text: str) -> tuple[str, float]:
        """The high-precision overrides alone: an opt-out, an explicit request for a human."""
        if is_unsubscribe(text):
            return "unsubscribe", 1.0
        if _HUMAN.search(text) and not _NOT_HUMAN.search(text):
            return "human", 1.0
        return UNKNOWN, 0.0

    def intent(self, text: str, codes: list[str], vector: np.ndarray | None = None) -> tuple[str, float]:
        rule = self.rule_intent(text)
        if rule[0] != UNKNOWN:
            return rule
        if self.classifier is None:
            return UNKNOWN, 0.0
        words = without_ids(text)
        prediction = self.classifier.predict(words, vector if words == text else None)
        intent, confidence = prediction.intent, prediction.confidence
        if intent == "unsubscribe" and opt_out_vetoed(text) or intent == "human" and _NOT_HUMAN.search(text):
            # "群消息太多我先屏蔽了 有活动私聊我" is no opt-out, "不用转人工" no request: the next reading, if any
            intent, confidence = next(((i, p) for i, p in prediction.ranked[1:] if p >= CONFIDENCE_FLOOR),
                                      (UNKNOWN, 0.0))
        if codes and intent not in _KEEPS_ID:
            return "order_status", max(confidence, 0.6)
        if intent in ("product_question", "purchase_intent", "unknown", "recommendation") and _MY_PARCEL.search(text):
            return "logistics", max(confidence, 0.6)
        return intent, confidence

    def understand(self, raw: str, *, taxonomy: set[str] | None = None, vector: np.ndarray | None = None,
                   classify: bool = True) -> Understanding:
        """``classify=False``: rules only (a plain answer to a waiting question needs no classifier)."""
        text = self.normalise(raw)
        codes, phones, links = extract_ids(text)
        if not text:
            intent, confidence = UNKNOWN, 0.0
        elif classify:
            intent, confidence = self.intent(text, codes, vector)
        else:
            intent, confidence = self.rule_intent(text)
        facts, constraints = self.facts(text)
        if intent == UNKNOWN and _WANTS.search(text) and any(f.key in self.catalog.profile.facts for f in facts):
            intent = "recommendation"  # "我怀孕了想抗老": a need stated, asking what suits it
        if names_a_product(intent, text):
            # "玻尿酸水润保湿面霜多少钱" names a product, not the customer's concern
            facts = [f for f in facts if f.key in ("budget", "age") or f.key not in self.catalog.profile.facts
                     or self.catalog.profile.facts[f.key].requires_self]
        clauses = {i: c for i, c in self.clause_intents(text).items() if i != intent} if classify else {}
        also = list(clauses)
        if not classify:
            clauses, also = {}, []
        allowed = taxonomy if taxonomy is not None else self.catalog.tags
        tags = [f.value for f in facts if f.value in allowed]
        negative = intent in INCIDENT_INTENTS | {"complaint", "abuse"} or bool(_NEGATIVE.search(text))
        return Understanding(
            intent=intent, confidence=round(confidence, 3), codes=codes, phones=phones, links=links,
            order_no=codes[0] if codes else None, facts=facts, tags=tags, constraints=constraints,
            sentiment="negative" if negative else "neutral",
            needs_human=intent in ("human", "abuse", "adverse_reaction"),
            is_question=bool(_QUESTION.search(text)), also=also, clauses=clauses, normalised=text)

    def clause_intents(self, text: str) -> dict[str, str]:
        """Intents that single clauses of a compound message state with confidence, with their clause."""
        clauses = [c for c in _CLAUSE.split(text) if len(c) >= 2]
        if len(clauses) < 2 or self.classifier is None:
            return {}
        found: dict[str, str] = {}
        for clause in clauses:
            # words only (one embedding per message keeps turns fast): their probabilities are flatter, so a
            # clause counts when its intent clearly leads
            prediction = self.classifier.predict(clause, embed=False)
            (top, p1), (_, p2) = prediction.ranked[0], prediction.ranked[1]
            if p1 < CLAUSE_CONFIDENCE or p1 < CLAUSE_LEAD * p2 or top in found:
                continue
            if top in _CONTROL_INTENTS:  # they change what happens next: confirm with the clause's embedding
                confirmed = self.classifier.predict(clause)
                if confirmed.intent != top or confirmed.confidence < 0.6:
                    continue
            found[top] = clause
        return found

    def facts(self, text: str) -> tuple[list[Fact], list[str]]:
        """Profile facts the customer states (vocabulary, budget, age) and contraindication labels mentioned."""
        facts: list[Fact] = []
        constraints: list[str] = []
        for key, vocabulary in self.catalog.profile.facts.items():
            values = match_values(vocabulary, text)
            if not values:
                continue
            for name in values:
                label = vocabulary.values[name].contraindication
                if label:
                    constraints.append(label)
            if vocabulary.requires_self and not _SELF.search(text):
                continue
            for name in values[:1] if vocabulary.exclusive else values:
                facts.append(Fact(key=key, value=name, confidence=0.8))
        if _BUDGET_CONTEXT.search(text) and not DECLINE.search(text):
            amount = parse_amount(text)
            if amount is not None and amount.value >= 1:
                facts.append(Fact(key="budget", value=f"{amount.value:g}", confidence=0.9))
        if m := _AGE.search(text):
            age = to_number(m.group(1) or m.group(2))
            if age is not None and 10 <= age <= 90:
                facts.append(Fact(key="age", value=f"{age:g}", confidence=0.9))
        return facts, list(dict.fromkeys(constraints))
