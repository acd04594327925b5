"""Inbound events, stored durably before processing so nothing received is ever lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


class InboundEvent(SQLModel, table=True):
    """A customer message or customer event; ``key`` dedupes redeliveries (e.g. WeCom MsgId)."""

    __table_args__ = (Index("ix_inbound_status_at", "status", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    customer_id: str = Field(index=True)
    kind: str = Field(description="customer_added, message, order, behaviour, customer_deleted")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime
    status: str = "pending"
