"""Tools bound to one customer: the only way a turn reads orders, shipments and catalogue facts.

The customer id is fixed when the tools are made (it comes from the channel); nothing in a message
or in model output can widen it. Ids written in a message are resolved in this order: this
customer's order number, this customer's tracking number, a product (SKU, model code, id in a link);
an order or tracking number of someone else gets a refusal and no data.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sqlalchemy import String, func, or_, select
from sqlalchemy.engine import Connection

from agent.understanding import (
    ASKS_STATUS,
    INCIDENT_INTENTS,
    ORDER_INTENTS,
    TOPIC_INTENTS,
    Facts,
    Understanding,
)
from knowledge.lexical import expand, generic_nouns, nouns, tokenize
from knowledge.retriever import Retriever
from knowledge.statuses import status_label
from knowledge.tables import Document, Product, Promotion, Shipment, ShopOrder
from knowledge.text import normalise

_P = Product.__table__.c
_O = ShopOrder.__table__.c
_S = Shipment.__table__.c
_D = Document.__table__.c
REFUSAL = "这个单号不在您的账户下，为保护隐私无法查询；请确认单号，或用下单的微信联系我们～"
CLOSED = {"completed", "refunded", "cancelled"}
PRODUCT_INTENTS = {"product_question", "recommendation", "comparison", "purchase_intent", "greeting", "smalltalk",
                   "unknown", "price_protection", "promotion", "usage_order", "shelf_life", *INCIDENT_INTENTS}
DOC_INTENTS = {"return_exchange", "price_protection", "complaint", "invoice", "shelf_life", "usage_order",
               "live_schedule", "shipping_time", "promotion", "product_question", "recommendation", "unknown",
               "smalltalk", "greeting", "logistics", "order_status", "purchase_intent", "comparison", *INCIDENT_INTENTS}
# An FAQ entry or policy clause answers a question whose e5 similarity to it reaches this bar: calibrated with
# bench/faq.py on the demo shop (right entries 0.865–0.936, questions no entry answers ≤ 0.863)
FAQ_SIMILARITY = 0.87
FAQ_MARGIN = 0.006  # … and beats the next entry by this much (bench/faq.py)
DOC_LABEL_BONUS = 0.02  # an entry labelled with the question's topic (bench/faq.py)
DOC_TITLE_BONUS = 0.01  # an entry whose title shares words with the question
# the entry the hybrid search (BM25 fused with dense) ranks first, when it shares real words with the question:
# "拆开喝了一泡 能退吗" is 七天无理由 (bench/faq.py)
DOC_WORDS_BONUS = 0.03
# FAQ/policy entries are chosen by their topic label for these (an incident's clause too)
LABELLED_DOC_INTENTS = TOPIC_INTENTS | INCIDENT_INTENTS
# intents a named product does not override (a broken kettle is an incident, not a price question)
_KEEP_FOR_PRODUCTS = {"product_question", "comparison", "purchase_intent", "recommendation", "complaint", "human",
                      "abuse", "unsubscribe", "return_exchange", "price_protection", "stop_asking", "hold_on",
                      *INCIDENT_INTENTS}
_KEEP_FOR_PARCELS = {"order_status", "logistics", "complaint", "human", "abuse", "unsubscribe", "invoice",
                     *INCIDENT_INTENTS}
_VERSUS = re.compile(r"\s+vs\.?\s+|vs|和|跟|与|还是|对比|相比|比起")
_VAGUE = {"unknown", "promotion", "shelf_life", "shipping_time", "live_schedule", "usage_order", "smalltalk"}
_ASKS_ABOUT_PRODUCT = re.compile(r"多少钱|价格|价钱|到手|几块|有货|现货|库存|功率|尺寸|容量|质保|保修|多大|多重|参数|规格|"
                                 r"how much|price")
_STATUS_MISREAD = {"unknown", "product_question", "purchase_intent", "recommendation", "shipping_time",
                   "return_exchange", "promotion", "smalltalk", "complaint", "price_protection", "comparison"}
_ASKS_AVAILABILITY = re.compile(r"有没有|有.{1,10}[吗嘛没不]|卖不卖|卖吗|在卖|多少钱|什么价|do you (have|sell)")
_SPACED_MODEL = re.compile(r"(?<![a-z0-9])([a-z]{1,6})\s+(\d{1,5})(?![0-9])")  # "af 5", "rw 9"
_EDITION = re.compile(r"\s*(pro|max|plus|mini|ultra|lite|se|air)(?![a-z0-9])")
# a model code: letters and digits mixed ("rw7", "kfr-35gw", "x20pro"), as shoppers type them
_MODEL = re.compile(r"(?<![a-z0-9])([a-z]{1,6}-?\d{1,5}[a-z0-9-]{0,6}|\d{1,4}[a-z]{1,4}\d{0,3})(?![a-z0-9])")


def _upper(value: str) -> str:
    return re.sub(r"[\s-]", "", value).upper()


class CustomerTools:
    """Read-only lookups for ``customer_id``, on the caller's connection."""

    def __init__(self, conn: Connection, retriever: Retriever | None, customer_id: str,
                 doc_index: dict[str, list[str]] | None = None) -> None:
        self._conn = conn
        self._retriever = retriever
        self._doc_index = doc_index or {}
        self.customer_id = customer_id
        self.calls: list[dict[str, Any]] = []  # what was looked up this turn (transcript, evals)

    def _called(self, name: str, **args: Any) -> None:
        self.calls.append({"name": name, "args": args})

    # ------------------------------------------------------------------ orders

    def orders(self, limit: int = 5) -> list[dict[str, Any]]:
        self._called("orders", customer_id=self.customer_id)
        rows = self._conn.execute(select(ShopOrder.__table__).where(_O.customer_id == self.customer_id)
                                  .order_by(_O.created_at.desc()).limit(limit)).mappings().all()
        return [self._labelled("order", r) for r in rows]

    def _labelled(self, kind: str, row: Any) -> dict[str, Any]:
        """The row with its status in the shop's words (its declared labels, else the canonical ones)."""
        return {**row, "status_label": status_label(self._conn, kind, row["status"])}

    def order(self, order_no: str) -> dict[str, Any] | None:
        """This customer's order, or None — also when the number exists under another customer."""
        self._called("order", order_no=order_no, customer_id=self.customer_id)
        row = self._conn.execute(select(ShopOrder.__table__).where(
            func.upper(_O.order_no) == _upper(order_no), _O.customer_id == self.customer_id)).mappings().first()
        if row is None and order_no.isdigit() and len(order_no) >= 8:
            # "2026 1100 047": the number without the shop's letter prefix (DD…), among this customer's own orders
            row = next((r for r in self._conn.execute(select(ShopOrder.__table__).where(
                _O.customer_id == self.customer_id, _O.order_no.endswith(order_no))).mappings()
                if re.sub(r"\D", "", r["order_no"]) == order_no), None)
        return self._labelled("order", row) if row else None

    def order_by_tracking(self, tracking_no: str) -> dict[str, Any] | None:
        """This customer's order that a tracking number of theirs belongs to."""
        orders = self.orders_by_tracking(tracking_no)
        return orders[0] if orders else None

    def orders_by_tracking(self, tracking_no: str) -> list[dict[str, Any]]:
        """This customer's orders a tracking number of theirs carries (a parcel may carry several)."""
        self._called("tracking", tracking_no=tracking_no, customer_id=self.customer_id)
        rows = self._conn.execute(select(ShopOrder.__table__).join(Shipment.__table__, _S.order_no == _O.order_no)
                                  .where(func.upper(_S.tracking_no) == _upper(tracking_no),
                                         _O.customer_id == self.customer_id).order_by(_O.order_no)).mappings().all()
        return [self._labelled("order", r) for r in rows]

    def exists_elsewhere(self, code: str) -> bool:
        """Whether ``code`` is an order or tracking number at all (someone else's, given the checks before)."""
        code = _upper(code)
        return self._conn.execute(select(_O.order_no).where(func.upper(_O.order_no) == code).limit(1)).first() \
            is not None or self._conn.execute(select(_S.order_no).where(func.upper(_S.tracking_no) == code)
                                              .limit(1)).first() is not None

    def shipments(self, order_no: str) -> list[dict[str, Any]]:
        if self.order(order_no) is None:
            return []
        rows = self._conn.execute(select(Shipment.__table__).where(_S.order_no == order_no)).mappings().all()
        return [self._labelled("shipment", r) for r in rows]

    # ------------------------------------------------------------------ catalogue

    def product(self, sku: str) -> dict[str, Any] | None:
        row = self._conn.execute(select(Product.__table__).where(_P.sku == sku)).mappings().first()
        return dict(row) if row else None

    def product_by_code(self, code: str) -> dict[str, Any] | None:
        """A product named exactly by SKU, model code or an id in its link."""
        code = _upper(code)
        conditions = [func.upper(_P.sku) == code]
        if "model" in _P:
            conditions.append(func.upper(func.replace(func.replace(_P.model, "-", ""), " ", "")) == code)
        if "url" in _P and code.isdigit() and len(code) >= 6:
            conditions.append(_P.url.contains(code))
        row = self._conn.execute(select(Product.__table__).where(or_(*conditions)).limit(1)).mappings().first()
        return dict(row) if row else None

    def models_in(self, text: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Products whose model code the text names exactly (best first), and model-like codes no product has.

        "rw7 f1" names the model RW7-F1; "rw7的ro膜" names RW7 and, among RW7's family (RW7-F1, RW7-F2…),
        the one whose name or aliases share the rest of the question; "af 5" names AF5 when AF5 exists."""
        text = _SPACED_MODEL.sub(lambda m: m.group(1) + m.group(2) if self.product_by_code(m.group(1) + m.group(2))
                                 else m.group(0), text)
        tokens = [m for m in _MODEL.finditer(text)
                  if not re.fullmatch(r"\d+(\.\d+)?(ml|g|kg|l|w|cm|mm|v|mah|h|m|片|支|岁|元|块|%)?", m.group(1))]
        found: list[dict[str, Any]] = []
        unknown: list[str] = []
        skip = -1
        for i, m in enumerate(tokens):
            if i <= skip:
                continue
            token = m.group(1)
            joined = token + tokens[i + 1].group(1) if i + 1 < len(tokens) and \
                text[m.end():tokens[i + 1].start()].strip(" -") == "" else None
            if joined is None and (suffix := _EDITION.match(text, m.end())):
                joined = token + suffix.group(1)  # "s10 pro"
            product = self.product_by_code(joined) if joined else None
            if product is not None:
                skip = i + 1
            else:
                product = self.product_by_code(token)
            if product is not None:
                found.extend(self._family_pick(product, text))
            elif re.search(r"[a-z]", token) and re.search(r"\d", token) and not re.fullmatch(r"spf\d+|pa\d*", token):
                unknown.append(token.upper())
        return list({p["sku"]: p for p in found}.values()), unknown

    def _missing(self, query: str) -> list[str]:
        """Product nouns of the question the shop does not carry, when it names nothing the shop does carry."""
        if self._retriever is None or self._retriever.names_a_document(query, "products"):
            return []
        return self._retriever.unknown_nouns(query, "products")

    def _owns_item(self, text: str) -> bool:
        """Whether one of this customer's orders holds something the text names (by name or alias)."""
        skus = {p["sku"] for p in self.aliased(text)}
        return any(_mentions_item(text, o) or skus & {str(i.get("sku")) for i in o.get("items") or []}
                   for o in self.orders())

    def aliased(self, text: str) -> list[dict[str, Any]]:
        """Products the text names by one of their aliases ("冲奶壶", "护颈仪"), longest alias first."""
        hits: dict[str, tuple[int, str]] = {}
        for sku, alias in _aliases(self._conn):
            if alias in text and len(alias) > hits.get(sku, (0, ""))[0]:
                hits[sku] = (len(alias), alias)
        if not hits:
            return []
        longest = max(n for n, _ in hits.values())
        # an alias inside a longer one ("空气炸锅" in "双锅空气炸锅") names the longer one's product only
        best = [sku for sku, (n, alias) in hits.items() if n == longest or not any(
            alias in other and alias != other for _, other in hits.values())]
        best.sort(key=lambda sku: -hits[sku][0])
        return [p for sku in best if (p := self.product(sku))]

    def _family_pick(self, product: dict[str, Any], text: str) -> list[dict[str, Any]]:
        """The named model, or a member of its family (model "RW7-…") that the rest of the question names."""
        model = str(product.get("model") or "")
        if not model or "model" not in _P:
            return [product]
        rows = self._conn.execute(select(Product.__table__).where(
            func.upper(_P.model).like(f"{model.upper()}-%"))).mappings().all()
        rest = text.replace(model.casefold(), " ")
        words = {t for t in tokenize(rest) if len(t) >= 2}
        scored = [(len(words & {t for t in tokenize(f"{r['name']} {' '.join(r.get('aliases') or [])}")
                                if len(t) >= 2}), dict(r)) for r in rows]
        best = max(scored, key=lambda item: item[0], default=(0, product))
        return [best[1]] if best[0] > len(words & {t for t in tokenize(product["name"]) if len(t) >= 2}) else [product]

    def resolve(self, u: Understanding) -> Understanding:
        """Ids and model codes resolved against this customer's orders and the catalogue, and the intent
        corrected by what they are: a product named exactly makes a price/spec/stock question about it
        ("100012345683 这个多少钱", "rw7保修几年"), whatever words the classifier leaned on."""
        orders, parcels, products = [], [], []
        for code in u.codes:  # each looked up once: own order, own parcel, product
            if self.order(code):
                orders.append(code)
            elif self.order_by_tracking(code):
                orders.append(code)
                parcels.append(code)
            elif product := self.product_by_code(code):
                products.append(product)
        if parcels and u.intent not in _KEEP_FOR_PARCELS:
            # the customer's own tracking number: the question is about that parcel ("这个怎么退回去了")
            return u.model_copy(update={"intent": "logistics", "confidence": max(u.confidence, 0.6)})
        if not products:
            products = self.models_in(u.normalised)[0]
        if products and not orders and u.intent not in _KEEP_FOR_PRODUCTS:
            return u.model_copy(update={"intent": "product_question", "confidence": max(u.confidence, 0.6)})
        if u.intent in _STATUS_MISREAD and not u.codes and ASKS_STATUS.search(u.normalised) and self._owns_item(
                u.normalised):
            # "昨晚拍的空气炸锅咋还没发", "之前那个水壶 钱退了没": asking after something this customer bought is
            # a question about that order, whatever the product or policy words suggested
            return u.model_copy(update={"intent": "order_status", "confidence": max(u.confidence, 0.6)})
        if (u.intent in _VAGUE or u.intent == "recommendation") and not orders and _ASKS_AVAILABILITY.search(
                u.normalised) and self._missing(u.normalised):
            # "有微波炉吗", "你们家有洗碗机没": asking for something the catalogue has no word for is a product
            # question, answered "we don't sell that" (never with whatever else is warm, cheap or new)
            return u.model_copy(update={"intent": "product_question", "confidence": max(u.confidence, 0.5)})
        if u.intent in _VAGUE and not orders and self.aliased(u.normalised):
            # "冲奶壶能装多少水": a product named by its alias; looser than a code, so only a vague reading yields
            return u.model_copy(update={"intent": "product_question", "confidence": max(u.confidence, 0.5)})
        if u.intent in _VAGUE and not orders and _ASKS_ABOUT_PRODUCT.search(u.normalised) and any(
                h.lexical for h in self.search(u.normalised, "products", k=3)):
            # "双篮那个空气炸锅多少钱": a price/spec/stock question naming something the catalogue has; what the
            # classifier read stays a second question ("…多少钱 还有周五直播几点")
            also = [u.intent, *[a for a in u.also if a not in (u.intent, "product_question")]]
            return u.model_copy(update={"intent": "product_question", "confidence": max(u.confidence, 0.5),
                                        "also": also, "clauses": {u.intent: u.normalised, **u.clauses}})
        return u

    def search(self, query: str, kind: str, k: int = 3, vector: np.ndarray | None = None) -> list[Any]:
        self._called("search", kind=kind, query=query)
        return self._retriever.search(query, kind, k=k, vector=vector) if self._retriever else []

    def promotions(self, today: str | None = None) -> list[dict[str, Any]]:
        """Promotions running on ``today`` (ISO date, shop time); all of them when no date is given."""
        rows = [dict(r) for r in self._conn.execute(select(Promotion.__table__)).mappings()]
        if today is None:
            return rows
        return [r for r in rows if (not r["starts"] or r["starts"][:10] <= today)
                and (not r["ends"] or r["ends"][:10] >= today)]

    def rank_documents(self, intent: str, query: str, vector: np.ndarray | None) -> list[dict[str, Any]]:
        """FAQ/policy entries for the question, best first. Scored by closeness in meaning, plus bonuses for
        an entry labelled with the question's topic intent (invoice, shelf life…), for one whose title shares
        words with the question and for the word-grounded first hit of the hybrid search; an entry *answers* (``matched``) when it is labelled, or its
        meaning clears the calibrated bar, or its title names what is asked (bench/faq.py)."""
        labelled = set(self._doc_index.get(intent, [])) if intent in LABELLED_DOC_INTENTS else set()
        near = self._retriever.nearest(query, ("faq", "policy"), vector, k=12) if self._retriever else []
        if not near:  # a non-semantic embedder: the fused lexical/dense ranking, labelled entries first
            near = sorted(self.search(query, "faq", k=6, vector=vector) + self.search(query, "policy", k=6,
                                                                                       vector=vector),
                          key=lambda h: (h.id not in labelled, not h.lexical, -h.score))
            return [{**h.__dict__, "matched": "intent" if h.id in labelled else None} for h in near]
        words = {t for t in tokenize(query) if len(t) >= 2}
        ranked = []
        best_words = {h.id for kind in ("faq", "policy") for h in self.search(query, kind, k=1) if h.lexical}
        runner_up = {h.id: max((o.score for o in near if o.id != h.id), default=0.0) for h in near[:2]}
        for hit in near:
            titled = hit.lexical and bool(words & {t for t in tokenize(hit.title) if len(t) >= 2})
            score = (hit.score + DOC_LABEL_BONUS * (hit.id in labelled) + DOC_TITLE_BONUS * titled
                     + DOC_WORDS_BONUS * (hit.id in best_words))
            # close in meaning: above the bar and clearly closer than any other entry (a near tie is a guess)
            meant = hit.score >= FAQ_SIMILARITY and hit.score - runner_up.get(hit.id, 1.0) >= FAQ_MARGIN
            matched = "intent" if hit.id in labelled else "meaning" if meant else "title" if titled else None
            ranked.append((score, {**hit.__dict__, "similarity": round(hit.score, 3), "matched": matched}))
        missing = labelled - {h.id for h in near}
        if missing:  # a labelled entry beyond the nearest twelve still answers
            rows = self._conn.execute(select(Document.__table__).where(_D.id.in_(missing))).mappings().all()
            ranked += [(0.0, {**dict(r), "matched": "intent"}) for r in rows]
        return [d for _, d in sorted(ranked, key=lambda sd: -sd[0])]

    # ------------------------------------------------------------------ one turn

    def gather(self, text: str, understanding: Understanding, vector: np.ndarray | None = None,
               remembered: tuple[str, ...] = (), today: str | None = None) -> Facts:
        """Look up what the intent needs. The brain's entities only narrow the search, never the customer."""
        facts = Facts()
        intent = understanding.intent
        query = understanding.normalised or text
        for code in understanding.codes:
            order = self.order(code)
            parcel = [] if order else self.orders_by_tracking(code)
            if len(parcel) > 1:  # one parcel carrying several of this customer's orders
                facts.orders = parcel
                continue
            order = order or (parcel[0] if parcel else None)
            if order is not None:
                facts.order = facts.order or order
                continue
            product = self.product_by_code(code)
            if product is not None:
                facts.products.append(product)
                continue
            if self.exists_elsewhere(code):
                facts.refused = REFUSAL
                return facts
            facts.unknown_codes.append(code)
        if intent in ORDER_INTENTS or intent in INCIDENT_INTENTS or intent in ("return_exchange", "complaint",
                                                                              "shipping_time", "price_protection",
                                                                              "invoice") or facts.order or facts.orders:
            self._orders(facts, understanding, query, include_all=intent in ORDER_INTENTS)
        if intent == "comparison" and not facts.products:
            facts.products = self._compared(query)
        if intent in PRODUCT_INTENTS and not facts.products:
            self._products(facts, understanding, query, vector, remembered)
        if intent in DOC_INTENTS:
            facts.documents = self.rank_documents(intent, query, vector)
        if intent == "promotion":
            running = {r["id"]: r for r in self.promotions(today)}
            ranked = [h.id for h in self.search(query, "promotions", k=len(running) or 1, vector=vector)]
            facts.promotions = [running[i] for i in ranked if i in running] + \
                [r for i, r in running.items() if i not in ranked]
        return facts

    def _orders(self, facts: Facts, u: Understanding, query: str, include_all: bool) -> None:
        """The order the turn is about: named, or the customer's open ones (filtered by a product named)."""
        if facts.order is None and not u.codes:
            recent = self.orders()
            open_orders = [o for o in recent if o["status"] not in CLOSED] or recent
            named = [o for o in open_orders if _mentions_item(query, o)] or [o for o in recent if _mentions_item(query, o)]
            candidates = named or open_orders
            if not named and self._retriever is not None:
                # "我买的口红怎么还没到" when no order of theirs holds a 口红: say so, never report another order as it
                asked = [w for w in nouns(query) if w not in generic_nouns() and not _in_catalogue_orders(w, recent)]
                if asked and self.search(asked[0], "products", k=1):
                    facts.unmatched_item = asked[0]
            if len(candidates) == 1 or (candidates and not include_all):
                facts.order = candidates[0]
            facts.orders = candidates if len(candidates) > 1 and include_all else []
        if facts.order is not None:
            shipments = self.shipments(facts.order["order_no"])
            facts.shipment = shipments[-1] if shipments else None
            facts.shipments = shipments
        for order in facts.orders:
            order["shipments"] = self.shipments(order["order_no"])

    def _compared(self, query: str) -> list[dict[str, Any]]:
        """"A 和 B 哪个好": each side resolved on its own, so two different products come back."""
        sides = [s for s in _VERSUS.split(query) if s.strip()]
        if len(sides) < 2:
            return []
        found: dict[str, dict[str, Any]] = {}
        for side in sides[:2]:
            side_facts = Facts()
            self._products(side_facts, Understanding(intent="product_question", normalised=side), side, None, ())
            best = next((p for p in side_facts.products if p["sku"] not in found), None)
            if best is not None:
                found[best["sku"]] = best
        return list(found.values()) if len(found) == 2 else []

    def _products(self, facts: Facts, u: Understanding, query: str, vector: np.ndarray | None,
                  remembered: tuple[str, ...]) -> None:
        exact, unknown_models = self.models_in(query)
        if exact:
            facts.products = exact
            return
        if unknown_models:
            facts.missing_product = unknown_models[0]
            return
        named = self.aliased(query)
        if named:
            facts.products = named
            return
        hits = self.search(" ".join([query, *u.products]), "products", k=5, vector=vector if not u.products else None)
        grounded = [h for h in hits if h.lexical]
        missing = self._missing(query)
        if missing and u.intent in ("product_question", "purchase_intent", "comparison"):
            facts.missing_product = missing[0]  # "美白牙膏多少钱": the shop sells no 牙膏, whatever shares 美白
            return
        # the product whose name shares the longest run of the question's words comes first ("控油凝霜")
        expanded = expand(query)
        rank = {h.id: i for i, h in enumerate(grounded)}

        words = {t for t in tokenize(expanded) if len(t) >= 2}

        def by_name(h: Any) -> tuple[int, int, int, int]:
            """Most of the question's words in the name, the longest shared run, then the plainer name."""
            run = _common_run(expanded, h.title)
            shared = len(words & {t for t in tokenize(h.title) if len(t) >= 2})
            return (-shared, -run, len(h.title), rank[h.id]) if run >= 2 else (0, 0, 0, rank[h.id])

        grounded.sort(key=by_name)
        if not grounded and remembered and re.search(r"这款|这个|那款|那个|它|刚才|上次", query):
            grounded = self.search(" ".join(remembered[:1]), "products", k=1)
        facts.products = [p for h in grounded if (p := self.product(h.id))]
        if not grounded:  # "面霜多少钱": no one product named, but the kind of product is in its name
            words = {t for t in tokenize(expanded) if len(t) >= 2}
            named = [p for h in hits if (p := self.product(h.id)) and any(w in p["name"].casefold() for w in words)]
            facts.candidates = named or ([] if u.intent != "recommendation" else
                                         [p for h in hits if (p := self.product(h.id))])


_ALIASES: dict[tuple[int, str | None, int], list[tuple[str, str]]] = {}


def _aliases(conn: Connection) -> list[tuple[str, str]]:
    """(sku, alias) of the catalogue, normalised: aliases of two or more characters that name one product only
    ("冲奶壶"), not a kind several are ("空气炸锅" is in three names: search ranks those); cached per catalogue."""
    count, last, length = conn.execute(select(func.count(), func.max(_P.sku),
                                              func.sum(func.length(func.cast(_P.aliases, String))))).one()
    key = (count, last, length or 0)
    if key not in _ALIASES:
        if len(_ALIASES) > 8:
            _ALIASES.clear()
        rows = conn.execute(select(_P.sku, _P.name, _P.category, _P.aliases)).all()
        texts = [normalise(" ".join([name, category, *(aliases or [])])) for _, name, category, aliases in rows]
        pairs = [(sku, normalise(a)) for sku, _, _, aliases in rows for a in aliases or [] if len(normalise(a)) >= 2]
        _ALIASES[key] = [(sku, alias) for sku, alias in pairs if sum(alias in text for text in texts) == 1]
    return _ALIASES[key]


def _mentions_item(text: str, order: dict[str, Any]) -> bool:
    """Whether the customer names something in this order ("我买的口红")."""
    words = {t for t in tokenize(text) if len(t) >= 2}
    for item in order.get("items") or []:
        name = str(item.get("name") or item.get("sku") or "")
        if words & {t for t in tokenize(name) if len(t) >= 2}:
            return True
    return False


def _common_run(a: str, b: str) -> int:
    """Length of the longest common substring of ``a`` and ``b`` (case-folded)."""
    a, b = a.casefold(), b.casefold()
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best = j - i
            else:
                break
    return best


def _in_catalogue_orders(word: str, orders: list[dict[str, Any]]) -> bool:
    return any(word in str(item.get("name") or "") for o in orders for item in o.get("items") or [])
