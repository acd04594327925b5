"""The offline brain: the router's understanding and 话术 replies filled only with looked-up facts.

Understanding is the router's (rules as overrides, then the classifier trained on the shop's
examples). Replies come from the library's ``replies.yaml`` and persona; when the facts do not answer
the question it says so and offers a human, and it never names a price, stock or order it did not look up.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from agent.router import Router
from agent.understanding import ASKS_STATUS, TOPIC_INTENTS, Facts, Reply, TurnInput, Understanding
from knowledge.embeddings import Embedder
from knowledge.lexical import shares_run
from knowledge.text import normalise
from sop_graphs.render import reply_text
from sop_graphs.spec import Catalog

INCIDENT_REPLY = {"adverse_reaction": "incident_reaction", "damaged": "incident_damaged",
                  "missing_item": "incident_missing", "quality_issue": "incident_quality"}
DOC_ONLY = TOPIC_INTENTS
_REFERS_BACK = re.compile(r"这款|这个|那款|那个|它|这瓶|那瓶")
SIMPLE = {"thanks", "bye", "human", "complaint", "abuse", "hold_on", "stop_asking", "smalltalk", "repeat_question"}
STRONG_MEANING = 0.9  # an FAQ entry this close in meaning answers even a question about a product we lack
_APOLOGISES = re.compile(r"抱歉|对不起|不好意思|歉意|sorry")
_ASKS_PRICE = re.compile(r"多少钱|价格|价钱|怎么卖|贵|到手|几块|多少米|售价|price|how much")
_ASKS_STOCK = re.compile(r"有货|库存|还有吗|缺货|断货|现货|有没有货|卖完|in stock")
_ASKS_FIT = re.compile(r"适合|能用|可以用|敏感|孕|哺乳|干皮|油皮|混合|痘|宝宝|儿童|老人")
_ASKS_USE = re.compile(r"怎么用|用法|早上|晚上|白天|几次|步骤|使用方法|顺序|先用|后用|再用|[涂擦抹]|多久用一次|"
                       r"how to use|when to use")


class OfflineBrain:
    """Deterministic brain over the shop's catalogue data; ``embedder`` is kept for the brain interface."""

    name = "offline"

    def __init__(self, catalog: Catalog, embedder: Embedder | None = None, router: Router | None = None) -> None:
        self.catalog = catalog
        self.router = router or Router(catalog, embedder=embedder)
        self.embedder = embedder

    def t(self, template: str, /, **values: Any) -> str:
        return reply_text(self.catalog, template, **values)

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None,
                   routed: Understanding | None = None) -> Understanding:
        return routed or self.router.understand(turn.text, taxonomy=set(turn.taxonomy), vector=vector)

    # ------------------------------------------------------------------ replies

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        reply = self._reply(turn, understanding, facts)
        if understanding.sentiment == "negative" and not _APOLOGISES.search(reply.text):
            # an upset customer hears that first, whatever the answer ("退款一个礼拜还没到账 想吞我钱？")
            return reply.model_copy(update={"text": f"{self.t('apology_lead')}{reply.text}"})
        return reply

    def _reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        intent = understanding.intent
        if facts.refused:
            return Reply(text=facts.refused, grounded=True)
        if intent in INCIDENT_REPLY:  # the apology and next steps, then the policy clause that applies
            clause = self._doc(facts, kinds=("policy",), strength=("intent", "meaning"))
            text = self.t(INCIDENT_REPLY[intent]) + (f"\n{clause.text}" if clause else "")
            return Reply(text=text, grounded=True, offer_human=True)
        entry = self.catalog.intents.intents.get(intent)
        if entry is not None and entry.reply:  # an intent the shop answers with one 话术 of its own
            return Reply(text=self.t(entry.reply), grounded=True)
        matched = self._doc(facts, strength=("meaning",))
        if matched is not None and intent == "unknown" and not facts.products and not _REFERS_BACK.search(
                understanding.normalised):
            return matched
        handler = {
            "greeting": self._greeting, "product_question": self._product, "purchase_intent": self._purchase,
            "recommendation": self._recommend, "comparison": self._compare, "order_status": self._order,
            "logistics": self._order, "promotion": self._promotion,
        }.get(intent)
        if handler is not None:
            return handler(turn, understanding, facts)
        if intent == "usage_order" and facts.products and facts.products[0].get("usage") and _names_product(
                understanding.normalised, facts.products[0]):
            return self._product(turn, understanding, facts)  # "睡眠面膜是涂完面霜再涂吗": that product's usage
        if intent in DOC_ONLY and facts.order is not None and ASKS_STATUS.search(understanding.normalised):
            # "泡脚盆申请退款了 现在啥情况": where their own order stands, then the clause that applies
            return self._order(turn, understanding, facts)
        if intent in DOC_ONLY:
            return self._document(turn, understanding, facts)
        if intent in SIMPLE:
            key = {"repeat_question": "smalltalk"}.get(intent, intent)
            # small talk that asks something we cannot know ("你们老板叫什么") is not an answer
            grounded = not (intent == "smalltalk" and understanding.is_question)
            return Reply(text=self.t(key) if grounded else self.t("unknown"), grounded=grounded,
                         offer_human=intent in ("complaint", "abuse") or not grounded)
        return self._fallback(turn, understanding, facts)

    def _greeting(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        text = self.t("greeting", name=f"，{turn.name}" if turn.name else "")
        if turn.remembered_products:
            text += self.t("recall", product=turn.remembered_products[0])
        return Reply(text=text, grounded=True)

    def _stock(self, p: dict[str, Any]) -> str:
        if p.get("status") == "presale":
            return self.t("presale")
        stock = p.get("stock")
        if stock is None:
            return self.t("stock_unknown")
        if stock <= 0:
            return self.t("stock_out", **p)
        return self.t("stock_low" if stock < 50 else "stock_in", **p)

    def _warnings(self, turn: TurnInput, u: Understanding, p: dict[str, Any]) -> list[str]:
        labels = set(u.constraints) | set(_constraints_of(turn, self.catalog))
        q = u.normalised or normalise(turn.text)
        # a label the profile vocabulary implies ("怀孕了" → 孕期), or one the question states ("他有糖尿病足")
        bad = [label for label in p.get("contraindications") or [] if label in labels or normalise(label) in q]
        return [self.t("contraindicated", name=p["name"], label=bad[0])] if bad else []

    def _specs(self, p: dict[str, Any], q: str) -> list[str]:
        """Spec fields the question asks about, by label ("尺寸") or the words for it ("多大"); a field asked
        about that this product's data does not have is said to be missing, never guessed."""
        specs: dict[str, str] = p.get("specs") or {}
        words_for = self.catalog.spec_words
        named = [label for label in words_for if label in q] + [label for label in specs if _names(label, q)]
        asked = named or [label for label, words in words_for.items() if any(w in q for w in words)]
        if not asked:
            return []
        found = [label for label in specs if label in asked or any(n in label or label in n for n in asked)]
        if not found:
            return [self.t("spec_none", name=p["name"], label=asked[0])]
        return [self.t("spec_line", label=label, value=specs[label]) for label in dict.fromkeys(found)]

    def _product(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        # "哺乳期能用你们的东西吗", "有没有福利群": the shop's own answer, unless it asks for a thing we don't sell
        # a product question the shop's FAQ answers outright ("哺乳期可以用你们的东西吗": no product named); the
        # bar is higher than for an unclassified question: product words pull any entry close
        doc = self._doc(facts, strength=("meaning",), floor=STRONG_MEANING)
        if doc is not None and (not facts.products or not _names_product(u.normalised, facts.products[0])):
            return doc
        if facts.missing_product:
            return Reply(text=self.t("not_carried", name=facts.missing_product), grounded=True)
        if not facts.products and facts.candidates:
            names = "、".join(f"「{c['name']}」¥{c['price']:g}" for c in facts.candidates[:4])
            return Reply(text=self.t("ambiguous_product", names=names), grounded=True)
        if not facts.products:
            return self._fallback(turn, u, facts)
        p = facts.products[0]
        if p.get("status") == "off_sale":
            return Reply(text=self.t("off_sale", name=p["name"]), grounded=True)
        q = u.normalised or turn.text
        specs = self._specs(p, q)
        asks_price, asks_stock = bool(_ASKS_PRICE.search(q)), bool(_ASKS_STOCK.search(q))
        asks_fit, asks_use = bool(_ASKS_FIT.search(q)), bool(_ASKS_USE.search(q))
        specific = asks_price or asks_stock or asks_fit or asks_use or bool(specs)
        parts: list[str] = [f"「{p['name']}」"] if specific and not asks_price else []
        if asks_price or not specific:
            parts.append(self.t("price", **p))
        parts += specs
        if (asks_fit or not specific) and p.get("suitable_for"):
            parts.append(self.t("suitable", **p))
        if asks_use and p.get("usage"):
            parts.append(self.t("usage", **p))
        if not specific and p.get("description"):
            parts.append(self.t("description", **p))
        if asks_stock or not specific or asks_price:
            parts.append(self._stock(p))
        parts += self._warnings(turn, u, p)
        return Reply(text="".join(parts), grounded=True)

    def _purchase(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        if facts.missing_product:
            return Reply(text=self.t("not_carried", name=facts.missing_product), grounded=True)
        if not facts.products:
            return self._fallback(turn, u, facts)
        p = facts.products[0]
        return Reply(text=self.t("purchase", **p) + self._stock(p) + "".join(self._warnings(turn, u, p)),
                     grounded=True)

    def _recommend(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        pool = facts.products or facts.candidates
        if not pool:
            return self._fallback(turn, u, facts)
        labels = set(u.constraints) | set(_constraints_of(turn, self.catalog))
        safe = [p for p in pool if not labels & set(p.get("contraindications") or [])]
        excluded = [label for label in labels if any(label in (p.get("contraindications") or []) for p in pool)]
        budget = _budget(turn, u)
        affordable = [p for p in safe if budget is None or p["price"] <= budget] or safe
        ranked = sorted(affordable, key=lambda p: (p.get("stock") is not None and p["stock"] <= 0,
                                                   not any(tag in (p.get("suitable_for") or "") for tag in turn.tags)))
        if not ranked:
            why = "、".join(sorted(labels)) or "您的需求"
            return Reply(text=self.t("recommend_none", why=why), grounded=False, offer_human=True)
        lines = [self.t("recommend_line", **p) for p in ranked[:3]]
        tail = [self.t("recommend_excluded", label="、".join(excluded))] if excluded else []
        return Reply(text="\n".join([self.t("recommend_head"), *lines, *tail]), grounded=True)

    def _compare(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        distinct = list({p["sku"]: p for p in facts.products}.values())
        if len(distinct) < 2:
            return self._product(turn, u, facts) if distinct else self._fallback(turn, u, facts)
        q = u.normalised or turn.text
        # each side with the spec fields the question asks about ("吸力差多少"), side by side
        lines = [self.t("compare_line", **p) + "".join(f"；{s.rstrip('。')}" for s in self._specs(p, q))
                 for p in distinct[:2]]
        warnings = [w for p in distinct[:2] for w in self._warnings(turn, u, p)]
        return Reply(text="\n".join([self.t("compare_head"), *lines, *warnings]), grounded=True)

    def _ship_text(self, ship: dict[str, Any] | None) -> str:
        if ship is None:
            return ""
        return "，" + self._ship_line(ship)

    def _ship_line(self, ship: dict[str, Any]) -> str:
        """Carrier, tracking number and the latest trace event (or the parcel's status when it has none)."""
        latest = ship["events"][-1] if ship.get("events") else {"text": ship["status_label"], "at": ""}
        return self.t("ship_line", carrier=ship["carrier"], tracking_no=ship["tracking_no"],
                      status_label=ship["status_label"], latest=latest["text"],
                      latest_at=latest.get("at", ""))

    def _order(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        if facts.unknown_codes and facts.order is None:
            return Reply(text=self.t("code_unknown", code=facts.unknown_codes[0]), grounded=True)
        lead = [self.t("item_not_in_orders", item=facts.unmatched_item)] if facts.unmatched_item else []
        if facts.orders:
            lines = [self.t("orders_line", order_no=o["order_no"], items=_items(o),
                            status=o["status_label"],
                            ship=self._ship_text(o["shipments"][-1] if o.get("shipments") else None))
                     for o in facts.orders]
            exception = any(s["status"] == "exception" for o in facts.orders for s in o.get("shipments") or [])
            tail = [self.t("ship_exception")] if exception else []
            parcels: dict[str, list[str]] = {}
            for o in facts.orders:
                for ship in o.get("shipments") or []:
                    parcels.setdefault(ship["tracking_no"], []).append(o["order_no"])
            tail += [self.t("orders_one_parcel", tracking_no=no, count=len(set(nos)))
                     for no, nos in parcels.items() if len(set(nos)) > 1]
            return Reply(text="\n".join([*lead, self.t("orders_head", count=len(facts.orders)), *lines, *tail]),
                         grounded=True, follow_up=self.t("ship_exception_task") if exception else None)
        order = facts.order
        if order is None:
            doc = self._doc(facts)
            if doc is not None and not re.search(r"我的|我买的|我的单|订单号|单号", u.normalised):
                return doc
            return Reply(text=self.t("order_none"), grounded=True)
        parts = lead + [self.t("order_line", order_no=order["order_no"], items=_items(order),
                        status=order["status_label"], amount=order["amount"])]
        follow_up = None
        for ship in facts.shipments or ([facts.shipment] if facts.shipment else []):
            parts.append(self._ship_line(ship))
            if ship["status"] == "exception":
                parts.append(self.t("ship_exception"))
                follow_up = self.t("ship_exception_task")
            elif ship.get("eta") and ship["status"] not in ("delivered", "returned"):
                parts.append(self.t("ship_eta", eta=ship["eta"]))
        if not facts.shipments and not facts.shipment and order["status"] == "paid":
            parts.append(self.t("ship_none"))
        doc = self._doc(facts, strength=("meaning", "words"))
        if doc is not None:  # "DD… 地址写错了能改吗": the order, and the clause that answers the rest
            parts.append(doc.text)
        return Reply(text="\n".join(parts), grounded=True, offer_human=follow_up is not None, follow_up=follow_up)

    def _promotion(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        doc = self._doc(facts, strength=("meaning",))  # "积分能抵钱吗" is the membership FAQ, not a sale
        if not facts.promotions:
            return doc or self._fallback(turn, u, facts)
        lines = [self.t("promotion_line", **p) for p in facts.promotions[:3]]
        return Reply(text="\n".join([*([doc.text] if doc else []), self.t("promotion_head"), *lines]), grounded=True)

    def _doc(self, facts: Facts, kinds: tuple[str, ...] = ("faq", "policy"),
             strength: tuple[str, ...] = ("intent", "meaning", "title", "words"), floor: float = 0.0) -> Reply | None:
        """The best FAQ entry / policy clause of ``kinds`` that answers the question by one of ``strength``:
        labelled with its topic (intent), close in meaning, its title names what is asked, or it shares words."""
        for doc in facts.documents:
            how = {doc.get("matched"), "words" if doc.get("lexical") else None}
            if doc.get("kind") in kinds and how & set(strength) and doc.get("similarity", 1.0) >= floor:
                body = doc["text"].split("\n", 1)[-1].strip() if doc["text"].startswith(doc["title"]) else doc["text"]
                key = "policy" if doc["kind"] == "policy" else "faq"
                return Reply(text=self.t(key, title=doc["title"], text=body), grounded=True)
        return None

    def _document(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        doc = self._doc(facts)
        if doc is not None:
            return doc
        if u.intent in ("return_exchange", "price_protection"):
            return Reply(text=self.t("policy_none"), grounded=False, offer_human=True)
        return self._fallback(turn, u, facts)

    def _fallback(self, turn: TurnInput, u: Understanding, facts: Facts) -> Reply:
        """An FAQ that answers it; a product named; otherwise admit it and offer a human. Closeness in meaning is
        calibrated on unclassified questions; a question read as about a product must be closer (product words
        pull every entry near)."""
        doc = self._doc(facts, strength=("intent", "title", "words")) or self._doc(
            facts, strength=("meaning",), floor=0.0 if u.intent == "unknown" else STRONG_MEANING)
        if doc is not None:
            return doc
        if facts.missing_product:
            return Reply(text=self.t("not_carried", name=facts.missing_product), grounded=True)
        if facts.products and u.intent in ("product_question", "unknown", "purchase_intent", "comparison"):
            return self._product(turn, u, facts)
        if u.intent in ("product_question", "purchase_intent", "comparison") and not facts.products:
            return Reply(text=self.t("not_found_product"), grounded=True)
        return Reply(text=self.t("unknown"), grounded=False, offer_human=True)


def _names_product(question: str, product: dict[str, Any]) -> bool:
    """The question names this product by three characters of its name in a row ("睡眠面膜"), not a kind
    ("精华和面霜先用哪个" is about two kinds, not 人参焕活精华霜)."""
    return shares_run(question, re.sub(r"\s+", "", str(product.get("name", "")).casefold()))


def _names(label: str, question: str) -> bool:
    """Whether the question names a spec label, whole or by three characters of it ("更换周期" → 建议更换周期)."""
    label = label.casefold()
    return label in question or any(label[i:i + 3] in question for i in range(max(len(label) - 2, 0)))


def _items(order: dict[str, Any]) -> str:
    return "、".join(f"{i.get('name') or i.get('sku')}×{i.get('qty', 1)}" for i in order.get("items") or [])


def _constraints_of(turn: TurnInput, catalog: Catalog) -> list[str]:
    """Contraindication labels the customer's profile carries (tags and facts named in the vocabulary)."""
    labels = []
    for vocabulary in catalog.profile.facts.values():
        for name, value in vocabulary.values.items():
            if value.contraindication and (name in turn.tags or name in turn.facts.values()):
                labels.append(value.contraindication)
    return labels


def _budget(turn: TurnInput, u: Understanding) -> float | None:
    for fact in u.facts:
        if fact.key == "budget":
            return float(fact.value)
    value = turn.facts.get("budget")
    try:
        return float(value) if value else None
    except ValueError:
        return None
