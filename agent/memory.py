"""Per-customer long-term memory: a running summary, products discussed and open issues.

Kept deterministic (no model needed): the summary is the last few topics in plain Chinese, which is
what the next conversation quotes ("上次您问的那款面霜…").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from agent.tables import CustomerMemory
from agent.understanding import Facts, Reply, Understanding
from knowledge.clock import as_utc
from knowledge.db import upsert

_M = CustomerMemory.__table__.c
TOPIC = {"product_question": "咨询产品", "recommendation": "求推荐", "order_status": "查订单", "logistics": "查物流",
         "return_exchange": "问退换货", "price_protection": "问价保", "promotion": "问活动", "complaint": "投诉",
         "purchase_intent": "想购买", "human": "找人工"}
MAX_PRODUCTS = 5
MAX_TOPICS = 6


def load(conn: Connection, customer_id: str) -> dict[str, Any]:
    row = conn.execute(select(CustomerMemory.__table__).where(_M.customer_id == customer_id)).mappings().first()
    return dict(row) if row else {"customer_id": customer_id, "summary": "", "products": [], "open_issues": [],
                                  "unanswered_streak": 0, "turns": 0, "updated_at": None}


def remember(conn: Connection, memory: dict[str, Any], u: Understanding, facts: Facts, reply: Reply,
             at: datetime) -> dict[str, Any]:
    """Fold one turn into memory and save it."""
    memory = dict(memory)
    products = [p for p in memory["products"] if p["sku"] not in {f["sku"] for f in facts.products[:1]}]
    if facts.products and u.intent in ("product_question", "recommendation", "purchase_intent"):
        top = facts.products[0]
        products.insert(0, {"sku": top["sku"], "name": top["name"], "at": as_utc(at).isoformat()})
    memory["products"] = products[:MAX_PRODUCTS]
    issues = list(memory["open_issues"])
    if u.intent == "complaint":
        issues.append(f"{as_utc(at):%m-%d} 投诉" + (f"（订单 {facts.order['order_no']}）" if facts.order else ""))
    if facts.shipment and facts.shipment["status"] == "exception":
        issues.append(f"{as_utc(at):%m-%d} 物流异常 {facts.shipment['tracking_no']}")
    memory["open_issues"] = list(dict.fromkeys(issues))[-MAX_TOPICS:]
    topics = [t for t in memory["summary"].split("；") if t]
    if u.intent in TOPIC:
        subject = f"「{facts.products[0]['name']}」" if facts.products and u.intent in (
            "product_question", "recommendation", "purchase_intent") else ""
        topics.append(f"{as_utc(at):%m-%d} {TOPIC[u.intent]}{subject}")
    memory["summary"] = "；".join(topics[-MAX_TOPICS:])
    memory["unanswered_streak"] = 0 if reply.grounded else memory["unanswered_streak"] + 1
    memory["turns"] += 1
    memory["updated_at"] = as_utc(at)
    upsert(conn, CustomerMemory.__table__, [memory])
    return memory


def reset_streak(conn: Connection, customer_id: str) -> None:
    """A human took the conversation (handoff or release): unanswered turns count from zero again."""
    conn.execute(CustomerMemory.__table__.update().where(_M.customer_id == customer_id).values(unanswered_streak=0))
