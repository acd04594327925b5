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
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from agent.understanding import INCIDENT_INTENTS, ORDER_INTENTS, TOPIC_INTENTS, Facts, Understanding
from knowledge.lexical import expand, generic_nouns, nouns, tokenize
from knowledge.retriever import Retriever
from knowledge.statuses import status_label
from knowledge.tables import Document, Product, Promotion, Shipment, ShopOrder

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
FAQ_MATCH_INTENTS = TOPIC_INTENTS | INCIDENT_INTENTS | {"unknown"}
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
        the one whose name or aliases share the rest of the question."""
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

    def documents_for(self, intent: str) -> list[dict[str, Any]]:
        """FAQ and policy entries labelled with ``intent`` when the index was built."""
        ids = self._doc_index.get(intent, [])
        if not ids:
            return []
        rows = self._conn.execute(select(Document.__table__).where(_D.id.in_(ids))).mappings().all()
        by_id = {r["id"]: dict(r) for r in rows}
        return [{**by_id[i], "matched": "intent"} for i in ids if i in by_id]

    def rank_documents(self, intent: str, query: str, vector: np.ndarray | None) -> list[dict[str, Any]]:
        """FAQ/policy entries for the question: for a question about a policy topic (invoice, shelf life…)
        those labelled with its intent first, in retrieval order (so "退款多久到账" gets the refund-time clause
        among the return clauses), then other close matches."""
        labelled = self.documents_for(intent) if intent in LABELLED_DOC_INTENTS else []
        hits = sorted(self.search(query, "faq", k=6, vector=vector) + self.search(query, "policy", k=6, vector=vector),
                      key=lambda h: (not h.lexical, -h.score))
        order = {h.id: rank for rank, h in enumerate(hits)}
        grounded = {h.id for h in hits if h.lexical}
        labelled.sort(key=lambda d: order.get(d["id"], len(order)))
        ids = {d["id"] for d in labelled}
        words = {t for t in tokenize(query) if len(t) >= 2}
        titled = [h.__dict__ for h in hits if h.lexical and h.id not in ids
                  and words & {t for t in tokenize(h.title) if len(t) >= 2}]
        titled_ids = {d["id"] for d in titled}
        # a labelled entry sharing words with the question; an entry whose title names what it asks about;
        # the other labelled entries; then any entry sharing words
        return ([{**d, "grounded": True} for d in labelled if d["id"] in grounded] + titled
                + [d for d in labelled if d["id"] not in grounded]
                + [h.__dict__ for h in hits if h.id not in ids and h.id not in titled_ids])

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
        if intent in FAQ_MATCH_INTENTS and self._retriever is not None:
            closest = self._retriever.closest(query, ("faq", "policy"), vector)
            if closest is not None and closest[1] >= FAQ_SIMILARITY:
                facts.faq_match = {**closest[0].__dict__, "similarity": round(closest[1], 3)}
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
        hits = self.search(" ".join([query, *u.products]), "products", k=5, vector=vector if not u.products else None)
        grounded = [h for h in hits if h.lexical]
        missing = self._retriever.unknown_nouns(query, "products") if self._retriever is not None else []
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
