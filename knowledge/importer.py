"""Imports a shop's own exports (JSON, JSONL, CSV, Excel .xlsx, Markdown) into the knowledge tables.

A mapping file (YAML, :class:`Mapping`) says where the rows are, which source value feeds which of
our fields, and how the shop's values translate, so no code is needed per shop. Every row is
validated first; if any row is bad the report lists each one with its row number and nothing is
written. Rows whose key repeats an earlier row of the same file are warnings (``duplicates``, with
both row numbers): the later row wins, as it would on a re-import.

Row numbers are the ones a person sees where the file is opened:

* ``.csv`` and ``.xlsx``: the spreadsheet row as Excel or WPS shows it. The header is the first
  non-empty row (row 1 in a plain export), the first data row below it is row 2; fully empty rows
  are skipped but still counted, so a bad row is reported at the row number on screen. A CSV cell
  quoted over several lines is one row, as in Excel.
* ``.json``: the 1-based position in the list of rows; ``.jsonl``: the 1-based row among the rows
  read (blank lines skipped); Markdown: the ``##`` section number.

Text files are UTF-8 (a BOM is fine). A CSV file that is not valid UTF-8 is read as GB18030, a
superset of GBK and GB2312: what Excel on Chinese Windows writes with 另存为 CSV. Valid UTF-8 is never
read as anything else; a file that is mostly UTF-8 with some bytes that are not (damaged, or parts
saved in different encodings) is refused rather than guessed. An ``.xlsx`` workbook is read from
its first worksheet (or a named one), formulas by their cached values: numbers stay numbers (119.0
becomes 119, so a long order number or phone number stored as a number reads as its digits, never
``1.38e+10``), dates and times become ISO text (``2026-11-01 10:30``); file size, unzipped size,
rows and columns are capped (``XLSX_MAX_*``).

Mapping syntax (every key optional)::

    records: data.list            # where the rows are in a .json file (or in each .jsonl line);
                                  # default: the top-level list, or the first list found under
                                  # items / data / records / list / rows
    fields:                       # source path -> our field
      goods_id: sku
      title: name
      category.cat_name: category # dotted path into nested objects
      tags[].name: aliases        # key[] takes every element of a list (a list results); key[0] one
                                  # (inside a YAML {flow} mapping, quote a key holding [ ])
      库存: stock                 # a flat (CSV) column is a one-segment path; a key present
                                  # literally in the row wins over its path reading
    values:                       # per field: source value -> our value (compared as text)
      status: {待处理: processing, 已退货: returned}
    statuses:                     # orders / logistics: statuses beyond the canonical set
      processing: 处理中          # (knowledge.statuses), with their Chinese labels; a value equal
      returned: 已退货            # to a declared label translates to its status by itself
    specs:                        # products: source path -> display label of an attribute
      power_w: 功率
    unmapped: specs               # products: keep every other non-empty source value as a spec
                                  # under its own key (nested objects: their leaf keys); default ignore
    ignore: [shop_id, sales]      # source paths never kept as specs
    items:                        # orders: the row's list of items, mapped onto OrderItem
      path: goodsList
      fields: {skuId: sku, goodsName: name, num: qty, price: price}
    events:                       # logistics: the trace list, mapped onto TraceEvent (same shape)
      path: 物流轨迹
      fields: {时间: at, 描述: text, 地点: location}

A source value that is absent or empty leaves the field unknown (None, "" or empty), never a
made-up value: a shop that exports no stock gets ``stock = None``, not 0. List fields (aliases,
contraindications) also take delimited text (``、,，;；/``); JSON text in a CSV cell is parsed.
A column whose name contains ``.``, ``[`` or ``]`` cannot be named (rename it in the export).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from knowledge.clock import as_utc
from knowledge.db import upsert
from knowledge.statuses import CANONICAL_LABELS, STATUS_NAME
from knowledge.tables import Document, Product, Promotion, Shipment, ShopOrder, StatusLabel, shipment_id
from knowledge.yaml_lines import YamlError, load_yaml

Kind = Literal["products", "orders", "logistics", "faq", "policy", "promotions"]
KINDS: tuple[str, ...] = ("products", "orders", "logistics", "faq", "policy", "promotions")
LIST_DELIMITERS = re.compile(r"[、,，;；/]")
_URL = TypeAdapter(AnyHttpUrl)


def _json_text(value: Any) -> Any:
    """JSON text (a CSV cell holding ``[...]`` or ``{...}``) parsed; anything else as it is."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _text(value: Any) -> str:
    """A source value as display text: 是/否 for booleans, lists joined with 、, objects as JSON."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return "、".join(_text(v) for v in value if v not in ("", None))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def _listed(value: Any) -> Any:
    """Delimited text (``孕期、哺乳期``) or a JSON list as a list of non-empty strings."""
    value = _json_text(value)
    if isinstance(value, str):
        value = LIST_DELIMITERS.split(value)
    if isinstance(value, list):
        return [t for v in value if v not in ("", None) and (t := _text(v))]
    return value


class _Row(BaseModel):
    """A source row after mapping; numeric ids (``"goods_id": 100012345678``) are read as text."""

    model_config = ConfigDict(coerce_numbers_to_str=True)


class ProductRow(_Row):
    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    model: str = ""
    category: str = ""
    price: float = Field(ge=0)
    stock: int | None = Field(default=None, ge=0, le=2**63 - 1, description="None when the export has no stock")
    description: str = ""
    usage: str = ""
    suitable_for: str = ""
    specs: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    contraindications: list[str] = Field(default_factory=list)
    url: str = ""
    status: Literal["on_sale", "off_sale", "presale"] = "on_sale"

    @field_validator("specs", mode="before")
    @classmethod
    def _specs_as_text(cls, value: Any) -> Any:
        value = _json_text(value)
        if isinstance(value, dict):
            return {str(k).strip(): t for k, v in value.items() if v not in ("", None) and (t := _text(v))}
        return value

    @field_validator("aliases", "contraindications", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """Checked as an http(s) URL, stored as the shop wrote it."""
        if not value:
            return value
        try:
            _URL.validate_python(value)
        except ValidationError:
            raise PydanticCustomError("url", "not an http(s) URL: '{value}'", {"value": value}) from None
        return value


def _known_status(kind: str, value: str, info: ValidationInfo) -> str:
    """``value`` if canonical or declared by the mapping (``context['statuses']``), else an error."""
    allowed = (info.context or {}).get("statuses", CANONICAL_LABELS[kind])
    if value not in allowed:
        raise PydanticCustomError(
            "unknown_status", "unknown {kind} status '{value}': neither canonical ({canonical}) nor declared "
            "under `statuses:` in the mapping (translate it under `values: status:` or declare it)",
            {"kind": kind, "value": value, "canonical": ", ".join(CANONICAL_LABELS[kind])})
    return value


class OrderItem(_Row):
    sku: str = Field(min_length=1)
    name: str = ""
    qty: int | None = Field(default=None, ge=1, le=2**63 - 1)
    price: float | None = Field(default=None, ge=0)


class OrderRow(_Row):
    status_kind: ClassVar[str] = "order"

    order_no: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    amount: float = Field(ge=0)
    items: list[OrderItem] = Field(default_factory=list)
    address: str = ""
    created_at: datetime

    @field_validator("items", mode="before")
    @classmethod
    def _items_from_text(cls, value: Any) -> Any:
        return _json_text(value)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str, info: ValidationInfo) -> str:
        return _known_status(cls.status_kind, value, info)

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        """Naive export times are shop-local; stored as UTC."""
        tz = ZoneInfo((info.context or {}).get("shop_timezone", "Asia/Shanghai"))
        return as_utc(value if value.tzinfo else value.replace(tzinfo=tz))

    @field_serializer("items")
    def _items_without_unknowns(self, items: list[OrderItem]) -> list[dict[str, Any]]:
        return [item.model_dump(exclude_none=True) for item in items]


class TraceEvent(_Row):
    at: str = Field(min_length=1)
    text: str = Field(min_length=1)
    location: str = ""


class ShipmentRow(_Row):
    status_kind: ClassVar[str] = "shipment"

    tracking_no: str = Field(min_length=1)
    order_no: str = Field(min_length=1)
    carrier: str = ""
    status: str = Field(min_length=1)
    eta: str | None = None
    events: list[TraceEvent] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        """One row per order and parcel: a reused tracking number never overwrites another order's."""
        return shipment_id(self.order_no, self.tracking_no)

    @field_validator("events", mode="before")
    @classmethod
    def _events_from_text(cls, value: Any) -> Any:
        return _json_text(value)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str, info: ValidationInfo) -> str:
        return _known_status(cls.status_kind, value, info)


class PromotionRow(_Row):
    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    starts: str = ""
    ends: str = ""


class DocumentRow(_Row):
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
    row: int = Field(description="CSV/XLSX: the spreadsheet row as Excel shows it (header row 1, first data row 2); "
                                 "JSON/JSONL: the 1-based row; Markdown: the section number; 0: the whole file")
    field: str
    message: str


class Duplicate(BaseModel):
    """A row whose key repeats an earlier row of the same file; the later row is the one stored."""

    row: int
    earlier_row: int
    key: str


class StatusChange(BaseModel):
    """An order whose status an import set: new (``before`` None) or changed."""

    order_no: str
    customer_id: str
    before: str | None
    after: str
    created_at: datetime


class ImportReport(BaseModel):
    kind: str
    path: str
    rows: int = Field(default=0, description="rows read from the file")
    written: int = Field(default=0, description="rows inserted or updated: rows less duplicates, 0 on errors")
    duplicates: list[Duplicate] = Field(default_factory=list, description="warnings; the later row won")
    errors: list[RowError] = Field(default_factory=list)
    encoding: str | None = Field(default=None, description="text files: the encoding read (utf-8 or gb18030)")
    sheet: str | None = Field(default=None, description=".xlsx: the worksheet read")
    changes: list[StatusChange] = Field(default_factory=list, description="orders: new orders and status changes")

    @property
    def ok(self) -> bool:
        return not self.errors


# -- source paths ------------------------------------------------------------------------------

_SEGMENT = re.compile(r"(?P<key>[^.\[\]]+)(?:\[(?P<index>\d*)\])?")
_MISSING = object()


@cache
def parse_path(path: str) -> tuple[tuple[str, str | None], ...]:
    """``a.b[].c`` as ``(("a", None), ("b", ""), ("c", None))``; raises ValueError on bad syntax."""
    parts = []
    for segment in path.split("."):
        match = _SEGMENT.fullmatch(segment.strip())
        if not match:
            raise ValueError(f"bad source path {path!r}: use dotted keys, key[] for every element of a "
                             "list or key[0] for one (a name containing '.', '[' or ']' cannot be named)")
        parts.append((match["key"], match["index"]))
    return tuple(parts)


def _walk(value: Any, parts: tuple[tuple[str, str | None], ...]) -> Any:
    for i, (key, index) in enumerate(parts):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = _json_text(value[key]) if index is not None else value[key]
        if index is None:
            continue
        if not isinstance(value, list):
            return _MISSING
        if index == "":
            return [v for item in value if (v := _walk(item, parts[i + 1:])) is not _MISSING]
        value = value[int(index)] if int(index) < len(value) else _MISSING
    return value


def resolve(row: dict[str, Any], path: str) -> Any:
    """The value at ``path`` in ``row`` (a key present literally wins), or ``_MISSING``."""
    return row[path] if path in row else _walk(row, parse_path(path))


def _plain(path: str) -> str:
    """A path without its list markers, for telling which source values a mapping used."""
    return re.sub(r"\[\d*\]", "", path)


def _keys_stripped(raw: dict[Any, Any]) -> dict[str, Any]:
    """Top-level keys as stripped text (CSV headers often carry spaces); csv's overflow key dropped."""
    return {str(k).strip(): v for k, v in raw.items() if k is not None}


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path, own key, value) of every non-object value inside ``value``."""
    for key, inner in value.items():
        path = f"{prefix}.{str(key).strip()}" if prefix else str(key).strip()
        if isinstance(inner, dict):
            yield from _leaves(inner, path)
        else:
            yield path, str(key).strip(), inner


# -- mapping -----------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldRules(_Strict):
    """Source path -> field renames and per-field value translations."""

    fields: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _paths_parse(cls, fields: dict[str, str]) -> dict[str, str]:
        for source in fields:
            parse_path(source)
        return fields

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, values: Any) -> Any:
        """YAML reads ``{1: on_sale}`` with an int key; values are compared as text."""
        if isinstance(values, dict):
            return {f: {str(k): v for k, v in t.items()} if isinstance(t, dict) else t for f, t in values.items()}
        return values

    def apply(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` (keys stripped) mapped onto our field names, values translated.

        A source key that no rule names passes through under its own name (our field names need no
        rule); a key named as a source is consumed, so ``{name: description, title: name}`` swaps.
        """
        roots = {_plain(p).split(".")[0] for p in self.fields}
        row = {k: v for k, v in raw.items() if k not in roots}
        for source, target in self.fields.items():
            value = resolve(raw, source)
            if value is not _MISSING:
                row[target] = value
        for field, table in self.values.items():
            value = row.get(field)
            if value is not None and not isinstance(value, dict | list) and _text(value) in table:
                row[field] = table[_text(value)]
        return row


class ListRules(FieldRules):
    """A per-row list (order items, trace events): where it is in the row and how its entries map."""

    path: str

    @field_validator("path")
    @classmethod
    def _path_parses(cls, path: str) -> str:
        parse_path(path)
        return path

    def apply_list(self, raw: dict[str, Any]) -> Any:
        entries = _json_text(resolve(raw, self.path))
        if not isinstance(entries, list):
            return entries
        return [_clean(self.apply(_keys_stripped(e))) if isinstance(e, dict) else e for e in entries]


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Strings stripped; empty values dropped, so the field is unknown rather than ``""``."""
    return {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()
            if not (v is None or (isinstance(v, str) and not v.strip()))}


def _problems(exc: ValidationError) -> str:
    """A mapping's validation errors on one line: ``where: what`` each."""
    lines = []
    for err in exc.errors():
        where, what = ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {what}" if where else what)
    return "; ".join(lines)


class Mapping(FieldRules):
    """How one export format maps onto our fields; see the module docstring for the syntax."""

    records: str | None = None
    statuses: dict[str, str] = Field(default_factory=dict)
    specs: dict[str, str] = Field(default_factory=dict)
    unmapped: Literal["ignore", "specs"] = "ignore"
    ignore: list[str] = Field(default_factory=list)
    items: ListRules | None = None
    events: ListRules | None = None

    @model_validator(mode="after")
    def _check(self) -> Mapping:
        for path in [*self.specs, *self.ignore, *([self.records] if self.records is not None else [])]:
            parse_path(path)
        for status, label in self.statuses.items():
            if not STATUS_NAME.match(status) or not label.strip():
                raise ValueError(f"statuses: {status!r}: a status is lower_snake_case ASCII with a non-empty "
                                 "Chinese label, e.g. `processing: 处理中`")
        for status, label in self.statuses.items():  # a declared label translates to its status
            self.values.setdefault("status", {}).setdefault(label.strip(), status)
        return self

    @classmethod
    def load(cls, path: Path | None) -> Mapping:
        """The mapping in ``path`` (none: an empty mapping); any problem is an :class:`ImportFormatError`."""
        if path is None:
            return cls()
        data = _read_yaml(path, "the mapping")
        if data is not None and not isinstance(data, dict):
            raise ImportFormatError(f"{path}: a mapping file is a YAML object (fields:, values:, ...), "
                                    f"not a {type(data).__name__}")
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise ImportFormatError(f"{path}: invalid mapping: {_problems(exc)}") from exc

    def check(self, kind: str, model: type[BaseModel]) -> None:
        """Every rule fits ``kind``: targets are its fields, kind-specific keys only where they apply."""
        problems = [f"fields: {s!r} -> {t!r}: {kind} has no field {t!r}"
                    for s, t in self.fields.items() if t not in model.model_fields]
        problems += [f"values: {kind} has no field {f!r}" for f in self.values if f not in model.model_fields]
        only = {"statuses": ("orders", "logistics"), "specs": ("products",), "ignore": ("products",),
                "items": ("orders",), "events": ("logistics",)}
        problems += [f"{key}: applies to {' and '.join(kinds)} only, not {kind}"
                     for key, kinds in only.items() if getattr(self, key) and kind not in kinds]
        if self.unmapped != "ignore" and kind != "products":
            problems.append(f"unmapped: applies to products only, not {kind}")
        for key, entry in (("items", OrderItem), ("events", TraceEvent)):
            rules: ListRules | None = getattr(self, key)
            if rules is not None:
                problems += [f"{key}.fields: {s!r} -> {t!r}: {entry.__name__} has no field {t!r}"
                             for s, t in rules.fields.items() if t not in entry.model_fields]
        if problems:
            raise ImportFormatError("mapping does not fit " + kind + ": " + "; ".join(problems))

    def row(self, raw: dict[str, Any], targets: Iterable[str]) -> dict[str, Any]:
        """One source row mapped onto our fields (``targets``: the row model's field names)."""
        raw = _keys_stripped(raw)
        row = self.apply(raw)
        lists = {key: rules for key, rules in (("items", self.items), ("events", self.events)) if rules}
        for key, rules in lists.items():
            if (entries := rules.apply_list(raw)) is not _MISSING:
                row[key] = entries
        specs = {label: _text(v) for source, label in self.specs.items()
                 if (v := resolve(raw, source)) is not _MISSING and v not in ("", None)}
        if self.unmapped == "specs":
            used = {_plain(p) for p in [*self.fields, *self.specs, *self.ignore, *(r.path for r in lists.values())]}
            used |= set(targets)
            for path, key, value in _leaves(raw):
                if any(path == u or path.startswith(u + ".") or u.startswith(path + ".") for u in used):
                    continue
                if value in ("", None) or (isinstance(value, list) and any(isinstance(v, dict) for v in value)):
                    continue
                specs.setdefault(key if key not in specs else path, _text(value))
        if specs:
            base = _json_text(row.get("specs", {}))
            row["specs"] = {**base, **specs} if isinstance(base, dict) else base  # not an object: a row error
        return _clean(row)


# -- reading files -----------------------------------------------------------------------------

class ImportFormatError(ValueError):
    """The file or its mapping cannot be used (bad JSON or YAML, unknown type, wrong path); nothing was imported."""


def _read_yaml(path: Path, what: str) -> Any:
    """A mapping file or shop manifest, through the project's one bounded YAML loader (no anchors or aliases,
    capped depth and size); every problem is an :class:`ImportFormatError` naming ``path``:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{path}: cannot read {what}: not UTF-8 text ({exc.reason})") from exc
    try:
        return load_yaml(text)
    except YamlError as exc:
        raise ImportFormatError(f"{path}:{exc.line}: invalid YAML: {exc.reason}") from exc


_WRAPPERS = ("items", "data", "records", "list", "rows")


def _records(data: Any, records: str | None, where: str) -> list[Any]:
    """The list of rows in a parsed JSON document: at ``records``, or the first list found."""
    if records is not None:
        found = resolve(data, records) if isinstance(data, dict) else _MISSING
        if found is _MISSING:
            raise ImportFormatError(f"{where}: records path {records!r} not found")
        if not isinstance(found, list):
            raise ImportFormatError(f"{where}: records path {records!r} is a {type(found).__name__}, not a list")
        return found
    queue = [data]
    while queue:
        value = queue.pop(0)
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            queue += [value[k] for k in _WRAPPERS if k in value]
    raise ImportFormatError(f"{where}: no list of rows found; name it in the mapping, e.g. `records: data.list`")


def _invalid_unicode(row: dict[str, Any]) -> str | None:
    """The first field of ``row`` holding text that is not valid Unicode (a JSON ``"\\ud800"`` escape parses to a
    lone surrogate, which no store or index can encode)."""
    for field, value in row.items():
        try:
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            return field
    return None


def _json_limit(exc: RecursionError | ValueError) -> str:
    """Why well-formed JSON was still refused: nesting past the interpreter's limit, or a number too long."""
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


class RowSource(NamedTuple):
    """A file's raw rows, each with its row number (see the module docstring), and how the file was read."""

    rows: Iterator[tuple[int, Any]]
    encoding: str | None = None
    sheet: str | None = None


XLSX = ".xlsx"
TEXT_SUFFIXES = (".csv", ".json", ".jsonl", ".md", ".markdown")
CSV_ENCODINGS = ("utf-8", "gb18030")  # in this order: valid UTF-8 is never read as GB18030 (which accepts GBK)
XLSX_MAX_BYTES = 64 * 1024 * 1024  # the workbook file
XLSX_MAX_UNZIPPED_BYTES = 256 * 1024 * 1024  # all its parts unpacked: a zip bomb is refused before parsing
XLSX_MAX_PARTS = 10_000
XLSX_MAX_ROWS = 200_000  # non-empty rows below the header
XLSX_MAX_COLUMNS = 1_000  # up to the last non-empty cell of a row
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")


def read_rows(path: Path, kind: str, records: str | None = None, sheet: str | None = None) -> Iterator[Any]:
    """Raw rows of a file by its suffix; Markdown yields one row per ``##`` section."""
    for _, row in open_rows(path, kind, records, sheet).rows:
        yield row


def open_rows(path: Path, kind: str, records: str | None = None, sheet: str | None = None) -> RowSource:
    """The numbered raw rows of a file by its suffix; any problem with the file is an :class:`ImportFormatError`."""
    suffix = path.suffix.lower()
    if records is not None and suffix not in (".json", ".jsonl"):
        raise ImportFormatError(f"{path}: `records:` applies to .json and .jsonl files only")
    if sheet is not None and suffix != XLSX:
        raise ImportFormatError(f"{path}: a sheet name applies to .xlsx files only")
    if suffix == XLSX:
        return _xlsx_source(path, sheet)
    if suffix not in TEXT_SUFFIXES:
        hint = " (an old .xls or WPS .et workbook: save it as .xlsx)" if suffix in (".xls", ".et") else ""
        raise ImportFormatError(f"{path}: unsupported file type {suffix!r}{hint} "
                                "(use .json, .jsonl, .csv, .xlsx or .md)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    if suffix == ".csv":
        text, encoding = _decode_csv(data, path)
        return RowSource(_csv_rows(text, path), encoding)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{path}:{_line_of(data, exc.start)}: cannot read as UTF-8 text: {exc.reason} "
                                f"(byte {exc.start})") from exc
    if suffix == ".jsonl":
        return RowSource(enumerate(_jsonl_rows(text, path, records), 1), "utf-8")
    if suffix == ".json":
        return RowSource(enumerate(_json_rows(text, path, records), 1), "utf-8")
    return RowSource(enumerate(_markdown_sections(text, kind, path.stem), 1), "utf-8")


def _parse_json(text: str, where: str, what: str) -> Any:
    """``text`` as JSON; a syntax error or a document too deep to read is an :class:`ImportFormatError` at
    ``where`` (``path`` or ``path:line``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = f":{exc.lineno}" if ":" not in where.rsplit("/", 1)[-1] else ""
        raise ImportFormatError(f"{where}{line}: invalid {what}: {exc.msg}") from exc
    except (RecursionError, ValueError) as exc:
        raise ImportFormatError(f"{where}: unreadable {what}: {_json_limit(exc)}") from exc


def _jsonl_rows(text: str, path: Path, records: str | None) -> Iterator[Any]:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            data = _parse_json(line, f"{path}:{number}", "JSON line")
            yield from (_records(data, records, f"{path}:{number}") if records is not None else [data])


def _json_rows(text: str, path: Path, records: str | None) -> Iterator[Any]:
    yield from _records(_parse_json(text, str(path), "JSON"), records, str(path))


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line holding byte ``offset`` (UTF-8 and GB18030 never use byte 0x0A inside a character)."""
    return data.count(b"\n", 0, offset) + 1


def _decode_csv(data: bytes, path: Path) -> tuple[str, str]:
    """``data`` as text and the encoding it was read in: UTF-8 (BOM or not) when it is valid UTF-8, else GB18030.

    GB18030 decodes most byte strings, so a file that is mostly valid UTF-8 (it has a UTF-8 BOM, or its valid
    multi-byte sequences are Chinese characters in a share that GBK text almost never forms by chance: a few
    percent) is refused with the line of its first bad byte instead of being read as GB18030 mojibake."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc
    lenient = data.decode("utf-8", errors="replace")
    chinese, bad = len(lenient) - len(_CJK.sub("", lenient)), lenient.count("\ufffd")
    if data.startswith(codecs.BOM_UTF8) or (chinese >= 8 and chinese * 4 >= bad):
        raise ImportFormatError(
            f"{path}:{_line_of(data, first_bad.start)}: the file is UTF-8 text with bytes that are not UTF-8 "
            f"(byte {first_bad.start}): damaged, or parts saved in different encodings; save the whole file "
            "again as CSV UTF-8 (or as GBK)") from first_bad
    try:
        return data.decode("gb18030").removeprefix("\ufeff"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            f"{path}:{_line_of(data, exc.start)}: cannot read the text: neither UTF-8 nor GBK/GB18030 "
            f"(tried {', '.join(CSV_ENCODINGS)}; first bad byte {exc.start}); save it as CSV UTF-8") from exc


def _empty(cells: Iterable[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of CSV text keyed by the header (the first non-empty row), numbered as a spreadsheet shows them.

    Like :class:`csv.DictReader`: a short row's missing cells are None and cells past the header are dropped."""
    reader = csv.reader(io.StringIO(text, newline=""))  # a quoted cell may hold newlines: still one row
    header: list[str] | None = None
    try:
        for number, cells in enumerate(reader, 1):
            if _empty(cells):
                continue
            if header is None:
                header = cells
                continue
            yield number, {name: cells[i] if i < len(cells) else None for i, name in enumerate(header)}
    except csv.Error as exc:
        raise ImportFormatError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from exc


def _cell(value: Any) -> Any:
    """An .xlsx cell as the importer reads it: numbers stay numbers (integer-valued floats as int, so 13800138000.0
    reads as its digits in a text field; fractions to the 15 significant digits Excel shows, so a formula's
    0.30000000000000004 is 0.3), dates and times as ISO text the validators accept, empty as ""."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        if not value.is_integer():
            value = float(f"{value:.15g}")
        return int(value) if value.is_integer() else value
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes" if not (value.second or value.microsecond) else "auto")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="minutes" if not (value.second or value.microsecond) else "auto")
    if isinstance(value, timedelta):
        return str(value)
    return value


def _xlsx_source(path: Path, sheet: str | None) -> RowSource:
    """The rows of a workbook's first worksheet (or ``sheet``), after checking the file is a bounded zip archive."""
    import openpyxl  # only .xlsx imports need it

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    if size > XLSX_MAX_BYTES:
        raise ImportFormatError(f"{path}: workbook of {size} bytes is over the limit of {XLSX_MAX_BYTES} bytes; "
                                "split it or export it as CSV")
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFormatError(f"{path}: not an .xlsx workbook (not a zip archive: an old .xls file renamed, or a "
                                "password-protected workbook?); save it as an unprotected .xlsx") from exc
    unzipped = sum(p.file_size for p in parts)
    if len(parts) > XLSX_MAX_PARTS or unzipped > XLSX_MAX_UNZIPPED_BYTES:
        raise ImportFormatError(f"{path}: workbook unpacks to {unzipped} bytes in {len(parts)} parts, over the limit "
                                f"of {XLSX_MAX_UNZIPPED_BYTES} bytes in {XLSX_MAX_PARTS} parts; split it")
    try:
        with warnings.catch_warnings():  # openpyxl warns about styles and extensions it does not read
            warnings.simplefilter("ignore")
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # a broken workbook fails in many ways (zip, XML, a missing part): all are the file's
        raise ImportFormatError(f"{path}: not a readable .xlsx workbook: {_reason(exc)}") from exc
    worksheets = {ws.title: ws for ws in workbook.worksheets}
    if not worksheets or (sheet is not None and sheet not in worksheets):
        workbook.close()
        names = ", ".join(repr(n) for n in worksheets) or "none"
        raise ImportFormatError(f"{path}: no worksheet {sheet!r} (worksheets: {names})" if sheet is not None
                                else f"{path}: the workbook has no worksheet")
    worksheet = worksheets[sheet] if sheet is not None else next(iter(worksheets.values()))
    worksheet.reset_dimensions()  # the declared size may be wrong; read what the sheet holds
    return RowSource(_xlsx_rows(workbook, worksheet, path), None, worksheet.title)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _xlsx_rows(workbook: Any, worksheet: Any, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a worksheet keyed by its header (the first non-empty row), numbered as Excel shows them."""
    where = f"{path} (sheet {worksheet.title!r})"
    header: list[str] | None = None
    number, data_rows = 0, 0
    try:
        for number, values in enumerate(worksheet.iter_rows(values_only=True), 1):  # missing rows come as ()
            cells = list(values)
            while cells and (cells[-1] is None or cells[-1] == ""):
                cells.pop()
            if _empty(cells):
                continue
            if len(cells) > XLSX_MAX_COLUMNS:
                raise ImportFormatError(f"{where}: row {number} has {len(cells)} columns, over the limit of "
                                        f"{XLSX_MAX_COLUMNS}")
            if header is None:
                header = [str(_cell(c)).strip() for c in cells]
                continue
            data_rows += 1
            if data_rows > XLSX_MAX_ROWS:
                raise ImportFormatError(f"{where}: more than {XLSX_MAX_ROWS} rows; split the file")
            yield number, {name: _cell(cells[i]) if i < len(cells) else "" for i, name in enumerate(header) if name}
    except ImportFormatError:
        raise
    except Exception as exc:  # damaged sheet XML surfaces while streaming
        raise ImportFormatError(f"{where}: unreadable after row {number}: {_reason(exc)}") from exc
    finally:
        workbook.close()


def _markdown_sections(text: str, kind: str, stem: str) -> Iterator[dict[str, Any]]:
    parts = re.split(r"^##\s+(.+)$", text, flags=re.M)
    for number, (title, body) in enumerate(zip(parts[1::2], parts[2::2], strict=True), 1):
        yield {"id": f"{kind}/{stem}/{number}", "kind": kind, "title": title.strip(), "text": body.strip(),
               "source": f"{stem}.md#{number}"}


# -- import ------------------------------------------------------------------------------------

def _row_errors(number: int, exc: ValidationError, rules: Mapping) -> Iterator[RowError]:
    sources = {target: source for source, target in rules.fields.items()}
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "-"
        message = err["msg"]
        if err["type"] == "missing" and field in sources:
            message += f" (mapping source {sources[field]!r} is absent or empty in this row)"
        yield RowError(row=number, field=field, message=message)


def import_file(engine: Engine, path: Path, kind: str, mapping: Path | None = None,
                shop_timezone: str = "Asia/Shanghai", sheet: str | None = None) -> ImportReport:
    """Validate every row, then write all of them in one transaction (upsert by key) or none.

    ``sheet``: the worksheet of an .xlsx workbook to read (default its first). Row numbers in the report follow
    the module docstring: for CSV and XLSX the row Excel shows (header row 1, first data row 2)."""
    if kind not in _MODELS:
        raise ImportFormatError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    model, table = _MODELS[kind]
    rules = Mapping.load(mapping)
    rules.check(kind, model)
    status_kind: str | None = getattr(model, "status_kind", None)
    context: dict[str, Any] = {"shop_timezone": shop_timezone}
    if status_kind:
        context["statuses"] = {**CANONICAL_LABELS[status_kind], **rules.statuses}
    keys = [c.name for c in table.__table__.primary_key.columns]
    source = open_rows(path, kind, rules.records, sheet)
    report = ImportReport(kind=kind, path=str(path), encoding=source.encoding, sheet=source.sheet)
    valid: dict[tuple[Any, ...], dict[str, Any]] = {}
    first_row: dict[tuple[Any, ...], int] = {}
    for number, raw in source.rows:
        report.rows += 1
        if not isinstance(raw, dict):
            report.errors.append(RowError(row=number, field="-", message="row is not an object"))
            continue
        try:
            row = model.model_validate(rules.row(raw, model.model_fields), context=context).model_dump()
        except ValidationError as exc:
            report.errors.extend(_row_errors(number, exc, rules))
            continue
        bad = _invalid_unicode(row)
        if bad is not None:
            report.errors.append(RowError(row=number, field=bad, message="invalid Unicode: a lone surrogate escape "
                                                                          "such as \\ud800 in the text"))
            continue
        key = tuple(row[k] for k in keys)
        if key in first_row:
            report.duplicates.append(Duplicate(row=number, earlier_row=first_row[key],
                                               key="/".join(str(k) for k in key)))
        first_row.setdefault(key, number)
        valid[key] = row
    if not report.rows:
        report.errors.append(RowError(row=0, field="-", message="the file has no rows"))
    if report.errors:
        return report
    with engine.begin() as conn:
        if kind == "orders":
            report.changes = _status_changes(conn, list(valid.values()))
        upsert(conn, table.__table__, list(valid.values()))
        if status_kind and rules.statuses:
            upsert(conn, StatusLabel.__table__, [{"kind": status_kind, "status": s, "label": label.strip()}
                                                 for s, label in rules.statuses.items()])
    report.written = len(valid)
    return report


def _status_changes(conn: Connection, rows: list[dict[str, Any]]) -> list[StatusChange]:
    """The orders of ``rows`` that are new or whose status differs from the stored one (read before writing)."""
    o = ShopOrder.__table__.c
    before: dict[str, str] = {}
    numbers = [r["order_no"] for r in rows]
    for start in range(0, len(numbers), 500):
        before.update(conn.execute(select(o.order_no, o.status).where(o.order_no.in_(numbers[start:start + 500]))).all())
    return [StatusChange(order_no=r["order_no"], customer_id=r["customer_id"], before=before.get(r["order_no"]),
                         after=r["status"], created_at=r["created_at"])
            for r in rows if before.get(r["order_no"]) != r["status"]]


DEMO_SHOP = Path(__file__).resolve().parent / "demo_shop"
DEMO_FILES: tuple[tuple[str, str, str | None], ...] = (
    ("products.csv", "products", "products.mapping.yaml"), ("orders.jsonl", "orders", "orders.mapping.yaml"),
    ("logistics.json", "logistics", None), ("faq.md", "faq", None), ("policy.md", "policy", None),
    ("promotions.json", "promotions", None))


def shop_files(directory: Path) -> list[tuple[str, str, str | None]]:
    """(file, kind, mapping) of a shop directory: its ``shop.yaml`` manifest (``files: [{file, kind, mapping}]``),
    or the demo shop's file names."""
    manifest = directory / "shop.yaml"
    if not manifest.exists():
        return list(DEMO_FILES)
    data = _read_yaml(manifest, "the shop manifest") or {}
    files = data.get("files", []) if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("file"), str) and isinstance(f.get("kind"), str)
            and isinstance(f.get("mapping"), str | None) for f in files):
        raise ImportFormatError(f"{manifest}: a shop manifest is `files: [{{file: NAME, kind: KIND, mapping: NAME}}]`"
                                " (mapping optional)")
    return [(f["file"], f["kind"], f.get("mapping")) for f in files]


def import_demo_shop(engine: Engine, shop_timezone: str = "Asia/Shanghai",
                     directory: Path = DEMO_SHOP) -> list[ImportReport]:
    """Load a bundled shop (products, orders, shipments, FAQ, policies, promotions); default the demo shop."""
    reports = [import_file(engine, directory / name, kind, directory / mapping if mapping else None, shop_timezone)
               for name, kind, mapping in shop_files(directory)]
    bad = [r for r in reports if not r.ok]
    if bad:
        raise ImportFormatError(f"demo shop file {bad[0].path} is invalid: {bad[0].errors[:3]}")
    return reports
