"""Tools bound to one customer: the only way a turn reads orders, shipments and catalogue facts.

The customer id is fixed when the tools are made (it comes from the channel); nothing in a message
or in model output can widen it. An order number that is not this customer's gets a refusal and no data.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Connection

from agent.understanding import Facts, Understanding
from knowledge.retriever import Retriever
from knowledge.tables import Product, Promotion, Shipment, ShopOrder

ORDER_NO = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{0,4}\d{8,20})(?![A-Za-z0-9])")
_P = Product.__table__.c
_O = ShopOrder.__table__.c
_S = Shipment.__table__.c
REFUSAL = "这个订单号不在您的账户下，为保护隐私无法查询；请确认订单号，或用下单的微信联系我们～"


class CustomerTools:
    """Read-only lookups for ``customer_id``, on the caller's connection."""

    def __init__(self, conn: Connection, retriever: Retriever | None, customer_id: str) -> None:
        self._conn = conn
        self._retriever = retriever
        self.customer_id = customer_id
        self.calls: list[dict[str, Any]] = []  # what was looked up this turn (transcript, evals)

    def _called(self, name: str, **args: Any) -> None:
        self.calls.append({"name": name, "args": args})

    def orders(self, limit: int = 3) -> list[dict[str, Any]]:
        self._called("orders", customer_id=self.customer_id)
        rows = self._conn.execute(select(ShopOrder.__table__).where(_O.customer_id == self.customer_id)
                                  .order_by(_O.created_at.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def order(self, order_no: str) -> dict[str, Any] | None:
        """This customer's order, or None — also when the number exists under another customer."""
        self._called("order", order_no=order_no, customer_id=self.customer_id)
        row = self._conn.execute(select(ShopOrder.__table__).where(
            _O.order_no == order_no, _O.customer_id == self.customer_id)).mappings().first()
        return dict(row) if row else None

    def shipment(self, order_no: str) -> dict[str, Any] | None:
        if self.order(order_no) is None:
            return None
        row = self._conn.execute(select(Shipment.__table__).where(_S.order_no == order_no)).mappings().first()
        return dict(row) if row else None

    def product(self, sku: str) -> dict[str, Any] | None:
        row = self._conn.execute(select(Product.__table__).where(_P.sku == sku)).mappings().first()
        return dict(row) if row else None

    def search(self, query: str, kind: str, k: int = 3, vector: np.ndarray | None = None) -> list[Any]:
        self._called("search", kind=kind, query=query)
        return self._retriever.search(query, kind, k=k, vector=vector) if self._retriever else []

    def promotions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute(select(Promotion.__table__)).mappings()]

    def gather(self, text: str, understanding: Understanding, vector: np.ndarray | None = None,
               remembered: tuple[str, ...] = ()) -> Facts:
        """Look up what the intent needs. The brain's entities only narrow the search, never the customer."""
        facts = Facts()
        intent = understanding.intent
        mentioned = understanding.order_no or next(iter(ORDER_NO.findall(text)), None)
        if mentioned:
            order = self.order(mentioned)
            if order is None:
                facts.refused = REFUSAL
                return facts
            facts.order = order
        if intent in ("order_status", "logistics") or (mentioned and intent in ("return_exchange", "complaint")):
            if facts.order is None:
                facts.orders = self.orders()
                facts.order = facts.orders[0] if facts.orders else None
            if facts.order is not None:
                facts.shipment = self.shipment(facts.order["order_no"])
        if intent in ("product_question", "recommendation", "purchase_intent", "greeting", "chitchat", "unknown",
                      "price_protection", "promotion"):
            query = text if understanding.products == [] else " ".join([text, *understanding.products])
            hits = self.search(query, "products", k=3, vector=vector if not understanding.products else None)
            if not hits and remembered:
                hits = self.search(" ".join(remembered), "products", k=1)
            facts.products = [p for h in hits if (p := self.product(h.id))]
        if intent in ("return_exchange", "price_protection", "complaint"):
            facts.documents = [h.__dict__ for h in self.search(text, "policy", k=2, vector=vector)]
        if intent in ("product_question", "recommendation", "unknown", "chitchat", "greeting", "logistics"):
            facts.documents += [h.__dict__ for h in self.search(text, "faq", k=2, vector=vector)]
        if intent == "promotion":
            ids = [h.id for h in self.search(text, "promotions", k=3, vector=vector)]
            rows = {r["id"]: r for r in self.promotions()}
            facts.promotions = [rows[i] for i in ids if i in rows]
        return facts
