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


class ProfileFact(SQLModel, table=True):
    """A profile fact with provenance; a newer fact for the same key supersedes (history is kept)."""

    __table_args__ = (Index("ix_fact_customer_key", "customer_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str
    key: str
    value: str
    source: str = Field(description="message key or step that stated it")
    method: str = Field(description="rule, model, answer or operator")
    confidence: float = 1.0
    at: datetime
    current: bool = True


class Product(SQLModel, table=True):
    """A sellable SKU with the facts the agent may quote (price, stock, specs, usage, who it suits).

    An optional fact the shop did not export is unknown, never a made-up value: ``stock`` is None
    (not 0, which would read as out of stock), the text fields are empty and the lists are empty.
    """

    sku: str = Field(primary_key=True)
    name: str
    model: str = Field(default="", index=True, description="the maker's model code, e.g. RW7 or KFR-35GW")
    category: str = ""
    price: float = Field(ge=0)
    stock: int | None = Field(default=None, description="units in stock; None = unknown (not exported)")
    description: str = ""
    usage: str = ""
    suitable_for: str = ""
    specs: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict),
                                  description="attributes by display label, e.g. {'功率': '2100W', '质保': '3年'}")
    aliases: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list),
                               description="other names shoppers use for it")
    contraindications: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list),
                                         description="who must not use it, e.g. ['孕期', '心脏起搏器佩戴者']")
    url: str = Field(default="", description="product page link")
    status: str = "on_sale"


class ShopOrder(SQLModel, table=True):
    """An order; read only by the customer id the channel identified, never by text in a message."""

    order_no: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    status: str = Field(description="a canonical order status (knowledge.statuses) or one the shop declared")
    amount: float = 0
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    address: str = ""
    created_at: datetime


def shipment_id(order_no: str, tracking_no: str) -> str:
    """The key of an order's parcel: a tracking number is unique only within an order."""
    return f"{order_no}/{tracking_no}"


def _shipment_id_default(context: Any) -> str:
    params = context.get_current_parameters()
    return shipment_id(params["order_no"], params["tracking_no"])


class Shipment(SQLModel, table=True):
    """A parcel of an order: carrier, tracking number, trace events (oldest first) and ETA.

    Keyed by ``{order_no}/{tracking_no}``: carriers reuse tracking numbers and one parcel can carry
    several orders (合并发货), so a tracking number alone identifies no single order's shipment.
    """

    id: str = Field(primary_key=True, sa_column_kwargs={"default": _shipment_id_default},
                    description="shipment_id(order_no, tracking_no); filled in when an insert leaves it out")
    tracking_no: str = Field(index=True)
    order_no: str = Field(index=True)
    carrier: str = ""
    status: str = Field(description="a canonical shipment status (knowledge.statuses) or one the shop declared")
    eta: str | None = None
    events: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class StatusLabel(SQLModel, table=True):
    """The Chinese label of an order or shipment status a shop's import mapping declared."""

    kind: str = Field(primary_key=True, description="order or shipment")
    status: str = Field(primary_key=True)
    label: str


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
