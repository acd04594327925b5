"""The offline brain: deterministic understanding and 话术 replies filled only with looked-up facts.

Understanding = lexical intent rules, then the nearest intent example by embedding; profile facts
parsed with the Chinese slot parsers (numbers like 两百, skin types by synonym). Replies come from
``replies.yaml``; if the facts do not answer the question it says so and offers a human.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.understanding import Fact, Facts, Intent, Reply, TurnInput, Understanding
from knowledge.embeddings import Embedder
from sop_graphs.answers import parse_number
from sop_graphs.policy import is_unsubscribe

RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("human", re.compile(r"转人工|人工客服|找人工|真人|客服电话|找你们领导")),
    ("complaint", re.compile(r"投诉|差评|太差|垃圾|骗人|坑人|过敏了|烂了|破损|质量问题|气死|什么破|不满意|漏液|假货")),
    ("price_protection", re.compile(r"降价|差价|价保|价格保护")),
    ("return_exchange", re.compile(r"退货|退款|换货|退换|退掉|能退|可以退|想退|售后|换个色号|少发|漏发|少了一件")),
    ("logistics", re.compile(r"物流|快递|到哪|发货了吗|什么时候到|几天到|派送|签收|单号|运单|到了没|还没到|没收到|能到|多久到|"
                               r"多久发货|几天发货|什么时候发货")),
    ("order_status", re.compile(r"订单|我买的|我的单|下的单|付款了")),
    ("promotion", re.compile(r"优惠|活动|满减|打折|折扣|优惠券|便宜点|有券")),
    ("recommendation", re.compile(r"推荐|哪款好|用什么|选哪个|适合我|有没有适合|求推荐")),
    ("purchase_intent", re.compile(r"想买|怎么买|下单|购买|在哪买|要一个|来一套")),
    ("product_question", re.compile(r"多少钱|价格|怎么卖|有货|库存|适合|能用吗|可以用吗|成分|怎么用|用法|功效|多少毫升|多少克|几片|保质期|孕妇|敏感肌")),
    ("thanks", re.compile(r"谢谢|感谢|多谢|辛苦了")),
    ("bye", re.compile(r"再见|拜拜|没事了|不用了")),
    ("greeting", re.compile(r"^(你好|您好|在吗|在不在|哈喽|hello|hi)[呀啊吗？?！!~～。.，,\s]*$", re.I)),
)
EXAMPLES: dict[str, list[str]] = {
    "logistics": ["我的东西到哪了", "包裹怎么还没收到", "快递走到哪里了"],
    "order_status": ["我上周买的那个怎么样了", "帮我查一下我买的东西"],
    "return_exchange": ["用着不喜欢可以退吗", "不想要了怎么办"],
    "recommendation": ["脸很干该用什么", "帮我挑一款面霜", "最近长痘用啥好"],
    "product_question": ["这个面霜怎么样", "精华的功效是什么", "这款用起来油不油"],
    "promotion": ["最近有什么福利", "双十一还有活动吗"],
    "complaint": ["用了脸上很痒很红", "东西收到是坏的", "你们服务太差劲了"],
    "thanks": ["好的明白了", "懂了谢谢你"],
}
SKIN = {"敏感肌": ("敏感肌", "敏感皮", "皮肤敏感", "容易过敏", "泛红"), "干皮": ("干皮", "干性", "很干", "起皮", "干燥肌"),
        "油皮": ("油皮", "油性", "大油田", "很油", "爱出油"), "混合皮": ("混合皮", "混油", "混干", "混合性")}
CONCERN = {"补水保湿": ("补水", "保湿", "缺水"), "抗老紧致": ("抗老", "细纹", "皱纹", "紧致", "抗衰"),
           "美白提亮": ("美白", "暗沉", "提亮"), "控油祛痘": ("控油", "痘痘", "闭口", "祛痘")}
STATUS_CN = {"pending_payment": "待付款", "paid": "已付款，待发货", "shipped": "已发货", "delivered": "已签收",
             "completed": "已完成", "returning": "退货处理中", "refunding": "退款处理中", "refunded": "已退款",
             "cancelled": "已取消"}
INTENT_THRESHOLD = 0.90  # e5 scores off-topic questions 0.86–0.88 against the examples, on-topic ≥ 0.92


@cache
def templates() -> dict[str, str]:
    return yaml.safe_load((Path(__file__).parent / "replies.yaml").read_text(encoding="utf-8"))


def parse_facts(text: str) -> list[Fact]:
    """Profile facts a customer states about themself, by rule."""
    facts: list[Fact] = []
    for value, words in SKIN.items():
        if any(w in text for w in words) and re.search(r"我|本人|自己|皮肤|肤质|是", text):
            facts.append(Fact(key="skin_type", value=value, confidence=0.8))
            break
    for value, words in CONCERN.items():
        if any(w in text for w in words):
            facts.append(Fact(key="concern", value=value, confidence=0.7))
    if m := re.search(r"预算[^\d一二两三四五六七八九十百千万]{0,4}([\d一二两三四五六七八九十百千万]+)", text):
        amount = parse_number(m.group(1))
        if amount is not None:
            facts.append(Fact(key="budget", value=f"{amount:g}", confidence=0.9))
    if m := re.search(r"(?:我|今年)\D{0,3}(\d{2}|[二三四五六][十]?[一二三四五六七八九]?)\s*岁", text):
        age = parse_number(m.group(1))
        if age is not None and 10 <= age <= 90:
            facts.append(Fact(key="age", value=f"{age:g}", confidence=0.9))
    if re.search(r"我.{0,4}(怀孕|孕期|备孕|哺乳)", text):
        facts.append(Fact(key="pregnant", value="是", confidence=0.9))
    return facts


class OfflineBrain:
    """Deterministic brain; ``embedder`` is shared with retrieval so a turn embeds its text once."""

    name = "offline"

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder
        self._examples: tuple[list[str], np.ndarray] | None = None

    def _nearest_intent(self, vector: np.ndarray | None) -> Intent | None:
        if self.embedder is None or vector is None:
            return None
        if self._examples is None:
            labels = [intent for intent, texts in EXAMPLES.items() for _ in texts]
            matrix = np.stack([self.embedder.query(t) for texts in EXAMPLES.values() for t in texts])
            self._examples = (labels, matrix)
        labels, matrix = self._examples
        scores = matrix @ vector
        best = int(np.argmax(scores))
        return labels[best] if float(scores[best]) >= INTENT_THRESHOLD else None  # type: ignore[return-value]

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None) -> Understanding:
        text = turn.text.strip()
        if is_unsubscribe(text):
            intent: Intent = "unsubscribe"
        else:
            intent = next((name for name, pattern in RULES if pattern.search(text)), None) \
                or self._nearest_intent(vector) or "unknown"
        facts = parse_facts(text)
        allowed = set(turn.taxonomy)
        tags = [f.value for f in facts if f.key in ("skin_type", "concern") and f.value in allowed]
        negative = intent == "complaint" or bool(re.search(r"生气|失望|太慢|怎么回事|差劲", text))
        return Understanding(
            intent=intent, facts=facts, tags=tags, sentiment="negative" if negative else "neutral",
            needs_human=intent == "human", is_question=bool(re.search(r"[吗呢？?]|多少|怎么|什么|哪|几", text)),
            order_no=None)

    # ------------------------------------------------------------------ replies

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        t = templates()
        intent = understanding.intent
        if facts.refused:
            return Reply(text=facts.refused, grounded=True)
        handler = {
            "greeting": self._greeting, "product_question": self._product, "purchase_intent": self._purchase,
            "recommendation": self._recommend, "order_status": self._order, "logistics": self._order,
            "return_exchange": self._policy, "price_protection": self._policy, "promotion": self._promotion,
        }.get(intent)
        if handler is not None:
            return handler(turn, facts)
        if intent in ("complaint", "human", "thanks", "bye"):
            return Reply(text=t[intent], grounded=True, offer_human=intent == "complaint")
        return self._fallback(turn, facts)

    def _greeting(self, turn: TurnInput, facts: Facts) -> Reply:
        t = templates()
        text = t["greeting"].format(name=f"，{turn.name}" if turn.name else "")
        if turn.remembered_products:
            text += t["recall"].format(product=turn.remembered_products[0])
        return Reply(text=text, grounded=True)

    def _product(self, turn: TurnInput, facts: Facts) -> Reply:
        t = templates()
        if not facts.products:
            return self._fallback(turn, facts)
        p = facts.products[0]
        q = turn.text
        parts: list[str] = []
        asks_price = bool(re.search(r"多少钱|价格|怎么卖|贵", q))
        asks_stock = bool(re.search(r"有货|库存|还有吗|缺货|断货", q))
        asks_fit = bool(re.search(r"适合|能用|可以用|敏感|孕|干皮|油皮|混合", q))
        asks_use = bool(re.search(r"怎么用|用法|早上|晚上|几次|步骤", q))
        specific = asks_price or asks_stock or asks_fit or asks_use
        if asks_price or not specific:
            parts.append(t["price"].format(**p))
        if asks_fit or not specific:
            parts.append(t["suitable"].format(**p))
        if asks_use:
            parts.append(t["usage"].format(**p))
        if not specific:
            parts.append(t["description"].format(**p))
        parts.append(self._stock(p))
        if asks_fit and re.search(r"孕|哺乳", q) and re.search(r"视黄醇|水杨酸", p["description"] + p["name"]):
            parts.append("注意：这款含视黄醇/水杨酸，孕期和哺乳期不建议使用。")
        return Reply(text="".join(parts), grounded=True)

    def _stock(self, p: dict[str, Any]) -> str:
        t = templates()
        if p["stock"] <= 0:
            return t["stock_out"].format(**p)
        return (t["stock_low"] if p["stock"] < 50 else t["stock_in"]).format(**p)

    def _purchase(self, turn: TurnInput, facts: Facts) -> Reply:
        if not facts.products:
            return self._fallback(turn, facts)
        p = facts.products[0]
        return Reply(text=templates()["purchase"].format(**p) + self._stock(p), grounded=True)

    def _recommend(self, turn: TurnInput, facts: Facts) -> Reply:
        t = templates()
        if not facts.products:
            return self._fallback(turn, facts)
        skin = [tag for tag in turn.tags if tag in SKIN]
        ranked = sorted(facts.products, key=lambda p: (p["stock"] <= 0, not any(s in p["suitable_for"] for s in skin)))
        lines = [t["recommend_line"].format(**p) for p in ranked[:3]]
        return Reply(text="\n".join([t["recommend_head"], *lines]), grounded=True)

    def _order(self, turn: TurnInput, facts: Facts) -> Reply:
        t = templates()
        order = facts.order
        if order is None:
            faq = self._faq(facts)
            if faq and not re.search(r"我的|我买的|我的单|订单号|DD\d", turn.text):  # a general question, not an order
                return faq
            return Reply(text=t["order_none"], grounded=True)
        items = "、".join(f"{i.get('name', i.get('sku'))}×{i.get('qty', 1)}" for i in order["items"])
        parts = [t["order_line"].format(order_no=order["order_no"], items=items,
                                        status=STATUS_CN.get(order["status"], order["status"]), amount=order["amount"])]
        ship = facts.shipment
        if ship is None:
            if order["status"] in ("paid",):
                parts.append(t["ship_none"])
        else:
            latest = ship["events"][-1] if ship["events"] else {"text": "已创建运单", "at": ""}
            parts.append(t["ship_line"].format(carrier=ship["carrier"], tracking_no=ship["tracking_no"],
                                               latest=latest["text"], latest_at=latest.get("at", "")))
            if ship["status"] == "exception":
                parts.append(t["ship_exception"])
            elif ship.get("eta") and ship["status"] not in ("delivered", "returned"):
                parts.append(t["ship_eta"].format(eta=ship["eta"]))
        return Reply(text="\n".join(parts), grounded=True, offer_human=bool(ship and ship["status"] == "exception"))

    def _policy(self, turn: TurnInput, facts: Facts) -> Reply:
        t = templates()
        docs = [d for d in facts.documents if d.get("kind") == "policy" and d.get("lexical")]
        if not docs:
            return Reply(text=t["policy_none"], grounded=False, offer_human=True)
        doc = docs[0]
        body = doc["text"].split("\n", 1)[-1]
        return Reply(text=t["policy"].format(title=doc["title"], text=body), grounded=True)

    def _promotion(self, turn: TurnInput, facts: Facts) -> Reply:
        t = templates()
        if not facts.promotions:
            return self._fallback(turn, facts)
        lines = [t["promotion_line"].format(**p) for p in facts.promotions[:3]]
        return Reply(text="\n".join([t["promotion_head"], *lines]), grounded=True)

    def _fallback(self, turn: TurnInput, facts: Facts) -> Reply:
        """An FAQ that shares words with the question answers it; otherwise admit it and offer a human."""
        faq = self._faq(facts)
        if faq:
            return faq
        if facts.products and turn.text and any(w in turn.text for w in ("这款", "这个", "那款")):
            return self._product(turn, facts)
        return Reply(text=templates()["unknown"], grounded=False, offer_human=True)

    @staticmethod
    def _faq(facts: Facts) -> Reply | None:
        """The first FAQ entry sharing words with the question, as the answer; None if there is none."""
        faq = [d for d in facts.documents if d.get("kind") == "faq" and d.get("lexical")]
        if not faq:
            return None
        return Reply(text=templates()["faq"].format(text=faq[0]["text"].split("\n", 1)[-1]), grounded=True)
