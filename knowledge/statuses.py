"""Order and shipment statuses: the canonical set with Chinese labels, plus what a shop declares.

A shop's import mapping may declare statuses of its own (``statuses: {processing: 处理中}``); the
import stores them in :class:`~knowledge.tables.StatusLabel`, and :func:`status_label` reads them
before falling back to the canonical labels here.
"""

from __future__ import annotations

import re
from typing import Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from knowledge.tables import StatusLabel

StatusKind = Literal["order", "shipment"]
STATUS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a status as stored: lower_snake_case ASCII

CANONICAL_LABELS: dict[str, dict[str, str]] = {
    "order": {
        "pending_payment": "待付款", "paid": "已付款，待发货", "shipped": "已发货", "delivered": "已签收",
        "completed": "已完成", "returning": "退货处理中", "refunding": "退款处理中", "refunded": "已退款",
        "cancelled": "已取消",
    },
    "shipment": {
        "created": "已创建运单", "picked_up": "已揽收", "in_transit": "运输中", "out_for_delivery": "派送中",
        "delivered": "已签收", "exception": "派送异常", "returned": "已退回",
    },
}


def status_label(conn: Connection, kind: str, status: str) -> str:
    """The Chinese label of ``status``: the shop's declared one, else the canonical one, else the status."""
    label = conn.execute(select(StatusLabel.label).where(StatusLabel.kind == kind, StatusLabel.status == status)
                         ).scalar_one_or_none()
    return label or CANONICAL_LABELS.get(kind, {}).get(status, status)
