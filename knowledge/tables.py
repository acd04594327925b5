"""Customer records: who they are, their tags with provenance, and a timeline of what happened."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


class Customer(SQLModel, table=True):
    """A WeCom external contact as the shop knows them. ``id`` is the channel's customer id."""

    id: str = Field(primary_key=True)
    name: str = ""
    owner: str = Field(default="", description="employee userid who added the customer")
    channel_code: str | None = Field(default=None, description="联系我 state code of the add")
    added_at: datetime
    stage: str = Field(default="new", index=True)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    orders_count: int = 0
    last_order_at: datetime | None = None
    last_inbound_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    bot_paused: bool = False


class CustomerTag(SQLModel, table=True):
    """A tag on a customer with where it came from (rule, step, answer, operator)."""

    customer_id: str = Field(primary_key=True)
    tag: str = Field(primary_key=True)
    source: str = ""
    created_at: datetime


class TimelineEntry(SQLModel, table=True):
    """Everything visible about a customer, in order: sends, deferrals, tasks, tags, stages, runs."""

    __table_args__ = (Index("ix_timeline_customer_at", "customer_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str
    at: datetime
    kind: str
    summary: str
    run_id: str | None = None
    key: str | None = Field(default=None, unique=True, description="dedupes replays of the same fact")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Product(SQLModel, table=True):
    """A sellable SKU with the facts the agent may quote (price, stock, usage, who it suits)."""

    sku: str = Field(primary_key=True)
    name: str
    category: str = ""
    price: float = Field(ge=0)
    stock: int = 0
    description: str = ""
    usage: str = ""
    suitable_for: str = ""
    status: str = "on_sale"


class ShopOrder(SQLModel, table=True):
    """An order; read only by the customer id the channel identified, never by text in a message."""

    order_no: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    status: str
    amount: float = 0
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    address: str = ""
    created_at: datetime


class Shipment(SQLModel, table=True):
    """A parcel of an order: carrier, tracking number, trace events (oldest first) and ETA."""

    tracking_no: str = Field(primary_key=True)
    order_no: str = Field(index=True)
    carrier: str = ""
    status: str = Field(description="created, picked_up, in_transit, out_for_delivery, delivered, exception, returned")
    eta: str | None = None
    events: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Promotion(SQLModel, table=True):
    """A running or scheduled promotion the agent may mention."""

    id: str = Field(primary_key=True)
    title: str
    description: str = ""
    starts: str = ""
    ends: str = ""


class Document(SQLModel, table=True):
    """One FAQ entry or policy clause (a Markdown section), the unit retrieval returns."""

    id: str = Field(primary_key=True)
    kind: str = Field(index=True, description="faq or policy")
    title: str
    text: str
    source: str = ""


class EmbeddingCache(SQLModel, table=True):
    """Vectors by (model, content hash): re-indexing unchanged text costs nothing."""

    model: str = Field(primary_key=True)
    digest: str = Field(primary_key=True)
    vector: bytes
