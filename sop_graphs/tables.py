"""Tables of the SOP engine: runs, due touchpoints, the outbox, coupon ledger, tasks, contact state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from knowledge.shards import shard_field


class SopRun(SQLModel, table=True):
    """One customer's pass through one SOP; also the LangGraph thread id."""

    __table_args__ = (Index("ix_run_customer_status", "customer_id", "status"),)

    id: str = Field(primary_key=True)
    sop_id: str = Field(index=True)
    sop_version: int
    family: str
    customer_id: str
    status: str = Field(default="active", description="active, scheduled, completed, exited")
    current_step: str | None = None
    waiting: str | None = Field(default=None, description="token of the interrupt the graph awaits")
    waiting_kind: str | None = Field(default=None, description="ask, event, chat or segment")
    waiting_since: datetime | None = None
    trigger: str = ""
    started_at: datetime
    ended_at: datetime | None = None
    exit_reason: str | None = None


class DueTouchpoint(SQLModel, table=True):
    """Something to do at ``due_at``: a push to dispatch, a graph to resume, an enrolment to start.

    Unique per run+step+occurrence, so scheduling the same thing twice is a no-op.
    """

    # run_id leads the second index so "cancel this run's pending rows" never walks every pending row
    __table_args__ = (Index("ix_due_status_due", "status", "due_at"), Index("ix_due_run_status", "run_id", "status"),
                      Index("ix_due_shard", "shard", "status", "due_at").ddl_if(dialect="postgresql"))

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    kind: str = Field(description="push, end, resume, enrol, cron, sweep")
    run_id: str | None = None
    customer_id: str | None = None
    sop_id: str | None = None
    step_id: str | None = None
    due_at: datetime
    status: str = "pending"
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    done_at: datetime | None = None
    shard: int | None = shard_field()


class Outbox(SQLModel, table=True):
    """Every outbound action, keyed deterministically; the dispatcher marks rows sent exactly once."""

    __table_args__ = (Index("ix_outbox_status_nb", "status", "not_before"),
                      Index("ix_outbox_customer", "customer_id", "status"),
                      Index("ix_outbox_run_status", "run_id", "status"),
                      Index("ix_outbox_shard", "shard", "status", "not_before").ddl_if(dialect="postgresql"))

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    action: str = Field(description="message, group_invite, coupon, ask, tag, task")
    customer_id: str
    run_id: str | None = None
    sop_id: str | None = None
    step_id: str | None = None
    mode: str = "kf"
    touchpoint: str = "private"
    executor: str = "ai"
    marketing: bool = False
    touch: str | None = Field(default=None, description="actions sharing a touch count once against caps")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = "pending"
    not_before: datetime
    created_at: datetime
    sent_at: datetime | None = None
    defer_count: int = 0
    last_deferral: str | None = None
    shard: int | None = shard_field()


class CouponLedger(SQLModel, table=True):
    """Coupons issued: at most one per (customer, campaign), whatever retries happen."""

    __table_args__ = (UniqueConstraint("customer_id", "campaign_id"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str
    campaign_id: str = Field(index=True)
    code: str
    run_id: str | None = None
    issued_at: datetime


class EmployeeTask(SQLModel, table=True):
    """A to-do for a human employee: send prepared content, call a customer, handle a handoff."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    customer_id: str | None = Field(default=None, index=True)
    assignee: str
    kind: str = Field(description="send_private, send_group, post_moment, handoff")
    title: str
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    due_at: datetime
    status: str = Field(default="open", index=True)
    created_at: datetime
    done_at: datetime | None = None


class ContactState(SQLModel, table=True):
    """Per-customer marketing contact counters that the contact policy reads and updates."""

    customer_id: str = Field(primary_key=True)
    last_marketing_at: datetime | None = None
    last_touch: str | None = None
    day: str | None = Field(default=None, description="shop-local date of day_count")
    day_count: int = 0
    kf_window: datetime | None = Field(default=None, description="the customer message kf_sent counts from")
    kf_sent: int = Field(default=0, description="kf messages sent since that customer message (WeCom allows 5)")


class PendingThread(SQLModel, table=True):
    """A run started without its LangGraph thread (sop_graphs/runner.py ``start_many``): the state its graph
    would hold at its first pause, written as that thread the first time something resumes the run."""

    run_id: str = Field(primary_key=True)
    sop_id: str
    as_node: str = Field(description="the last node run: the thread continues from its edges")
    state_type: str = Field(description="serialiser type tag of ``state`` (LangGraph's serde)")
    state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class WorkerState(SQLModel, table=True):
    """Durable worker bookkeeping, e.g. the simulated clock of a simulated run."""

    name: str = Field(primary_key=True)
    value: str
