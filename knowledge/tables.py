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
