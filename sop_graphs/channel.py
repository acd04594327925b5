"""Outbound channels. The dispatcher hands them actions with idempotency keys.

A channel must be idempotent by key: delivering the same key twice has the effect of once
(WeCom kf uses the key as ``msgid``). :class:`SandboxChannel` is the default without credentials:
it records every delivery in its own SQLite file and counts repeated attempts of a key.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from knowledge.db import sqlite_pragmas


@dataclass(frozen=True)
class Delivery:
    """One action as a channel sees it."""

    key: str
    customer_id: str
    action: str
    mode: str
    touchpoint: str
    at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


def shown_text(payload: dict[str, Any] | None) -> str:
    """One line for an operator of what an outbound action says: its text, else its title, else its coupon code."""
    p = payload or {}
    return str(p.get("text") or p.get("title") or p.get("code") or "")


class Channel(Protocol):
    """Delivers actions; must treat a repeated key as already delivered."""

    def deliver(self, deliveries: Sequence[Delivery]) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_record (
    key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, action TEXT NOT NULL, mode TEXT NOT NULL,
    touchpoint TEXT NOT NULL, at TEXT NOT NULL, payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS ix_sandbox_customer ON sandbox_record(customer_id, at);
"""


class SandboxChannel:
    """Records messages, employee tasks, tag writes and coupons locally instead of calling WeCom."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        sqlite_pragmas(self._conn, 16)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def deliver(self, deliveries: Sequence[Delivery]) -> None:
        rows = [(d.key, d.customer_id, d.action, d.mode, d.touchpoint, d.at.isoformat(),
                 json.dumps(d.payload, ensure_ascii=False)) for d in deliveries]
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO sandbox_record(key, customer_id, action, mode, touchpoint, at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET attempts = attempts + 1",
                rows,
            )

    def records(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded deliveries in order, optionally for one customer."""
        query = "SELECT key, customer_id, action, mode, touchpoint, at, payload, attempts FROM sandbox_record"
        args: tuple[Any, ...] = ()
        if customer_id is not None:
            query += " WHERE customer_id = ?"
            args = (customer_id,)
        with self._lock:
            cursor = self._conn.execute(query + " ORDER BY at, rowid", args)
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def close(self) -> None:
        self._conn.close()
