"""Inbound events, stored durably before processing so nothing received is ever lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from knowledge.shards import shard_field


class InboundEvent(SQLModel, table=True):
    """A customer message or customer event; ``key`` dedupes redeliveries (e.g. WeCom MsgId)."""

    # the second index lets "pending messages" seek past a backlog of pending adds (a bulk import)
    __table_args__ = (Index("ix_inbound_status_at", "status", "received_at"),
                      Index("ix_inbound_status_kind_at", "status", "kind", "received_at"),
                      Index("ix_inbound_shard", "shard", "status", "received_at").ddl_if(dialect="postgresql"))

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    customer_id: str = Field(index=True)
    kind: str = Field(description="customer_added, message, order, behaviour, customer_deleted")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime
    status: str = "pending"
    shard: int | None = shard_field()


class Message(SQLModel, table=True):
    """The transcript: one row per customer message and per reply, with what the turn understood."""

    __table_args__ = (Index("ix_message_customer_at", "customer_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    customer_id: str
    direction: str = Field(description="in or out")
    text: str
    at: datetime
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CustomerMemory(SQLModel, table=True):
    """Long-term memory the next conversation uses: running summary, products discussed, open issues."""

    customer_id: str = Field(primary_key=True)
    summary: str = ""
    products: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    open_issues: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    unanswered_streak: int = 0
    turns: int = 0
    updated_at: datetime | None = None
