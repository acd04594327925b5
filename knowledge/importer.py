"""Imports a shop's own exports (JSON, JSONL, CSV, Markdown) into the knowledge tables.

A mapping file (YAML) renames the shop's columns — Chinese headers included — onto our fields and
translates values (``已发货`` → ``shipped``), so no code is needed per shop. Every row is validated
first; if any row is bad the report lists each one with its row number and nothing is written.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from sqlalchemy.engine import Engine

from knowledge.clock import as_utc
from knowledge.db import upsert
from knowledge.tables import Document, Product, Promotion, Shipment, ShopOrder

Kind = Literal["products", "orders", "logistics", "faq", "policy", "promotions"]
KINDS: tuple[str, ...] = ("products", "orders", "logistics", "faq", "policy", "promotions")


class ProductRow(BaseModel):
    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    category: str = ""
    price: float = Field(ge=0)
    stock: int = Field(default=0, ge=0)
    description: str = ""
    usage: str = ""
    suitable_for: str = ""
    status: Literal["on_sale", "off_sale", "presale"] = "on_sale"


class OrderItem(BaseModel):
    sku: str
    name: str = ""
    qty: int = Field(default=1, ge=1)
    price: float = Field(default=0, ge=0)


class OrderRow(BaseModel):
    order_no: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    status: Literal["pending_payment", "paid", "shipped", "delivered", "completed", "returning", "refunding",
                    "refunded", "cancelled"]
    amount: float = Field(ge=0)
    items: list[OrderItem] = Field(default_factory=list)
    address: str = ""
    created_at: datetime

    @field_validator("items", mode="before")
    @classmethod
    def _items_from_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value.strip().startswith("[") else value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        """Naive export times are shop-local; stored as UTC."""
        tz = ZoneInfo((info.context or {}).get("shop_timezone", "Asia/Shanghai"))
        return as_utc(value if value.tzinfo else value.replace(tzinfo=tz))


class TraceEvent(BaseModel):
    at: str
    text: str
    location: str = ""


class ShipmentRow(BaseModel):
    tracking_no: str = Field(min_length=1)
    order_no: str = Field(min_length=1)
    carrier: str = ""
    status: Literal["created", "picked_up", "in_transit", "out_for_delivery", "delivered", "exception", "returned"]
    eta: str | None = None
    events: list[TraceEvent] = Field(default_factory=list)

    @field_validator("events", mode="before")
    @classmethod
    def _events_from_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value.strip().startswith("[") else value


class PromotionRow(BaseModel):
    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    starts: str = ""
    ends: str = ""


class DocumentRow(BaseModel):
    id: str
    kind: Literal["faq", "policy"]
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    source: str = ""


_MODELS: dict[str, tuple[type[BaseModel], Any]] = {
    "products": (ProductRow, Product), "orders": (OrderRow, ShopOrder), "logistics": (ShipmentRow, Shipment),
    "promotions": (PromotionRow, Promotion), "faq": (DocumentRow, Document), "policy": (DocumentRow, Document),
}


class RowError(BaseModel):
    row: int = Field(description="1-based data row (CSV header excluded; Markdown: section number)")
    field: str
    message: str


class ImportReport(BaseModel):
    kind: str
    path: str
    rows: int = 0
    written: int = 0
    errors: list[RowError] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Mapping(BaseModel):
    """Column renames and value translations for one export format."""

    fields: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> Mapping:
        return cls() if path is None else cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

    def apply(self, raw: dict[str, Any]) -> dict[str, Any]:
        row = {self.fields.get(str(k).strip(), str(k).strip()): v for k, v in raw.items()}
        for field, table in self.values.items():
            if isinstance(row.get(field), str) and row[field].strip() in table:
                row[field] = table[row[field].strip()]
        return {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if v not in ("", None)}


def read_rows(path: Path, kind: str) -> Iterator[dict[str, Any]]:
    """Raw rows of a file by its suffix; Markdown yields one row per ``##`` section."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv":
        yield from csv.DictReader(text.splitlines())
    elif suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ImportFormatError(f"{path}:{number}: invalid JSON line: {exc.msg}") from exc
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        if isinstance(data, dict):
            data = data.get("items") or data.get("data") or [data]
        yield from data
    elif suffix in (".md", ".markdown"):
        yield from _markdown_sections(text, kind, path.stem)
    else:
        raise ImportFormatError(f"{path}: unsupported file type {suffix!r} (use .json, .jsonl, .csv or .md)")


def _markdown_sections(text: str, kind: str, stem: str) -> Iterator[dict[str, Any]]:
    parts = re.split(r"^##\s+(.+)$", text, flags=re.M)
    for number, (title, body) in enumerate(zip(parts[1::2], parts[2::2], strict=True), 1):
        yield {"id": f"{kind}/{stem}/{number}", "kind": kind, "title": title.strip(), "text": body.strip(),
               "source": f"{stem}.md#{number}"}


class ImportFormatError(ValueError):
    """The file itself cannot be read (bad JSON, unknown type); nothing was imported."""


def import_file(engine: Engine, path: Path, kind: str, mapping: Path | None = None,
                shop_timezone: str = "Asia/Shanghai") -> ImportReport:
    """Validate every row, then write all of them in one transaction (upsert by key) or none."""
    if kind not in _MODELS:
        raise ImportFormatError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    model, table = _MODELS[kind]
    rules = Mapping.load(mapping)
    report = ImportReport(kind=kind, path=str(path))
    valid: list[dict[str, Any]] = []
    for number, raw in enumerate(read_rows(path, kind), 1):
        report.rows += 1
        if not isinstance(raw, dict):
            report.errors.append(RowError(row=number, field="-", message="row is not an object"))
            continue
        try:
            valid.append(model.model_validate(rules.apply(raw), context={"shop_timezone": shop_timezone})
                         .model_dump())
        except ValidationError as exc:
            for err in exc.errors():
                report.errors.append(RowError(row=number, field=".".join(str(p) for p in err["loc"]) or "-",
                                              message=err["msg"]))
    if not valid and not report.errors:
        report.errors.append(RowError(row=0, field="-", message="the file has no rows"))
    if report.errors:
        return report
    with engine.begin() as conn:
        upsert(conn, table.__table__, valid)
    report.written = len(valid)
    return report


DEMO_SHOP = Path(__file__).resolve().parent / "demo_shop"
DEMO_FILES: tuple[tuple[str, str, str | None], ...] = (
    ("products.csv", "products", "products.mapping.yaml"), ("orders.jsonl", "orders", "orders.mapping.yaml"),
    ("logistics.json", "logistics", None), ("faq.md", "faq", None), ("policy.md", "policy", None),
    ("promotions.json", "promotions", None))


def import_demo_shop(engine: Engine, shop_timezone: str = "Asia/Shanghai") -> list[ImportReport]:
    """Load the bundled demo shop (products, orders, shipments, FAQ, policies, promotions)."""
    reports = [import_file(engine, DEMO_SHOP / name, kind, DEMO_SHOP / mapping if mapping else None, shop_timezone)
               for name, kind, mapping in DEMO_FILES]
    bad = [r for r in reports if not r.ok]
    if bad:
        raise ImportFormatError(f"demo shop file {bad[0].path} is invalid: {bad[0].errors[:3]}")
    return reports
