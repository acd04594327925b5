"""Guardrails on what the LLM brain may say and set. Pure functions; the LLM brain calls them.

A reply is checked against the facts the runtime looked up for the turn:

- **Amounts** in any notation ("¥59", "59元", "59块", "RMB 59", "五十九元", "59.00", "满299减40") are
  parsed to values (cn2an through :mod:`knowledge.amounts`) and each must *equal* a number of the
  facts. The facts' numbers are collected by walking their structured values (numbers, numeric
  strings, and amounts written as money inside texts such as a promotion's "满 299 减 40") — never by
  substring search, so the "59" inside a tracking number does not back "¥59".
- **Promises** only the runtime's rules may make: a coupon or code granted to the customer, a tag put
  on them, a refund made for them. A code must be one the facts hold; a refund claim needs an order
  in the facts whose status is a refund; a coupon grant or a tag is never something a reply can make.
- **Length**: at most ``max_chars``.

What the model may *set* through its structured understanding is restricted too: tags only from the
taxonomy groups marked ``model_settable`` (customer attributes such as 肤质/诉求; operational tags such as
已购买 or 投诉已解决 are set by rules only), and profile facts only with values of the shop's vocabulary,
a budget within a sane range and a plausible age.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agent.understanding import Fact
from knowledge.amounts import parse_amount, to_number
from knowledge.text import normalise
from sop_graphs.spec import Catalog
from sop_graphs.vocabulary import match_values

# ------------------------------------------------------------------ amounts

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?[百千万]?|[零〇一二两三四五六七八九十百千万]+"
_QUANTITY = r"(?!\s*(?:件|个|瓶|支|盒|套|次|天|日|周|月|年|小时|分钟|岁|片|份|罐|袋|包|人|名|ml|g|kg|l|%))"
_MONEY_AFTER = r"\s*(?:元|块|圆|rmb|cny)"
_MONEY = [
    re.compile(r"(?:¥|rmb|cny|人民币)\s*(" + _NUM + r")"),  # ¥59, RMB 59, 人民币59
    re.compile(r"(" + _NUM + r")\s*(?:-|~|到|至)\s*(?:" + _NUM + r")" + _MONEY_AFTER),  # the low end of 199-299元
    re.compile(r"(" + _NUM + r")" + _MONEY_AFTER),  # 59元, 59块, 五十九元, 1.5万元
    re.compile(r"满\s*(" + _NUM + r")" + _QUANTITY),  # 满299减40: the threshold ...
    re.compile(r"减\s*(" + _NUM + r")" + _QUANTITY),  # ... and what comes off
    re.compile(r"(?<![\d.,])(\d+(?:,\d{3})*\.\d{2})(?![\d.])" + _QUANTITY),  # 59.00
]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def money_amounts(text: str) -> list[tuple[str, float | None]]:
    """Every amount of money written in ``text`` as (what was written, its value; None if unreadable)."""
    folded = _fold(text)
    found: dict[int, tuple[str, float | None]] = {}
    for pattern in _MONEY:
        for m in pattern.finditer(folded):
            if m.start(1) not in found:
                token = m.group(1)
                found[m.start(1)] = (token, to_number(token.replace(",", "")))
    return [found[start] for start in sorted(found)]


def fact_numbers(value: Any) -> set[float]:
    """Every number the facts hold, found by walking their structure (not by searching their JSON text)."""
    numbers: set[float] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int | float | Decimal):
            if math.isfinite(float(item)):
                numbers.add(float(item))
        elif isinstance(item, str):
            plain = item.strip().replace(",", "")
            if re.fullmatch(r"\d+(?:\.\d+)?", plain):
                numbers.add(float(plain))
            numbers.update(v for _, v in money_amounts(item) if v is not None)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return numbers


def _strings(value: Any) -> Iterable[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)


def _known(amount: float, numbers: set[float]) -> bool:
    return any(abs(amount - n) < 0.005 for n in numbers)


# ------------------------------------------------------------------ promises

_CLAUSE = re.compile(r"[。！？!?；;\n]+")
_YOU = r"(?:您|你)"
_CODE = re.compile(r"(?:券码|优惠码|兑换码|折扣码|激活码|口令|暗号|coupon\s*code|promo\s*code|code)"
                   r"\s*(?:是|为)?\s*:?\s*[\"'“‘「『]?\s*([a-z0-9][a-z0-9_-]{2,})")
_COUPON = re.compile(r"券|红包|优惠码|兑换码|券码|礼金|代金|返现|现金|积分")
_GRANT = re.compile(r"(?:送|发|赠|补|返)(?:了)?(?:给)?" + _YOU
                    + r"|(?:给|帮|为|替)" + _YOU + r".{0,8}?(?:送|发|申请|安排|争取|准备|补|赠)"
                    + r"|送(?:上)?(?:一|1|两|2|个|张|份)")
_TAG = [re.compile(r"(?:打上|打个|打好|贴上|加上|添加|标记|标注|备注|设置|设为|设成)(?:了)?.{0,8}(?:标签|tag)"),
        re.compile(r"(?:标记为|标注为|备注为|标为|设为|设置为|设成|列为|归为|升级为|升级成|升为|升到|晋升为|调整为)"
                   r".{0,6}(?:vip|会员|贵宾|等级|重点客户)"),
        re.compile(r"(?:标签|tag).{0,4}(?:已|打好|加好|设置好|改好)")]
_REFUND_WORD = r"(?:退款|退钱|退差价|赔偿|补偿|返还|全额退)"
_REFUND = [re.compile(r"(?:已经?|马上|立即|立刻|这就|现在就|尽快)(?:给|帮|为|替)?" + _YOU + r"?(?:办理|安排|操作|申请|处理|提交)?"
                      r"(?:了)?" + _REFUND_WORD),
           re.compile(r"(?:给|帮|为|替)" + _YOU + r"(?:办理|安排|操作|申请|处理|提交|全额)?(?:了)?" + _REFUND_WORD),
           re.compile(_REFUND_WORD + r"已经?(?:到账|成功|办好|安排|打|退回|原路)")]
_REFUND_STATUS = re.compile(r"refund|退款")


@dataclass(frozen=True)
class Violation:
    """One way a reply is not backed by the facts."""

    kind: str  # amount, code, coupon, tag, refund, length
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _refund_on_record(facts: dict[str, Any]) -> bool:
    """Is there an order or shipment in the facts whose status is a refund?"""
    stack: list[Any] = [facts.get(k) for k in ("order", "orders", "shipment", "shipments")]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("status", "status_label") and isinstance(value, str) and _REFUND_STATUS.search(_fold(value)):
                    return True
                if isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_reply(text: str, facts: dict[str, Any], *, max_chars: int) -> list[Violation]:
    """What in ``text`` the looked-up ``facts`` (``Facts.as_prompt()``) do not back; empty when it may be sent."""
    if len(text) > max_chars:
        return [Violation("length", f"{len(text)} characters, at most {max_chars}")]
    violations: list[Violation] = []
    numbers = fact_numbers(facts)
    for written, value in money_amounts(text):
        if value is None or not _known(value, numbers):
            violations.append(Violation("amount", f"{written} is not an amount of the facts"))
    tokens = {t for s in _strings(facts) for t in re.findall(r"[a-z0-9][a-z0-9_-]*", _fold(s))}
    for m in _CODE.finditer(_fold(text)):
        if m.group(1) not in tokens:
            violations.append(Violation("code", f"code {m.group(1)} is not in the facts"))
    refunded = _refund_on_record(facts)
    for clause in _CLAUSE.split(_fold(text)):
        if _COUPON.search(clause) and _GRANT.search(clause):
            violations.append(Violation("coupon", f"promises a coupon: {clause.strip()}"))
        if any(p.search(clause) for p in _TAG):
            violations.append(Violation("tag", f"claims to tag the customer: {clause.strip()}"))
        if not refunded and any(p.search(clause) for p in _REFUND):
            violations.append(Violation("refund", f"claims a refund no order shows: {clause.strip()}"))
    return violations


# ------------------------------------------------------------------ what the model may set

AGE_RANGE = (1.0, 120.0)


def model_settable_tags(catalog: Catalog) -> set[str]:
    """Tags of the taxonomy groups marked ``model_settable``: the only ones the model's understanding may set."""
    return {t for group in catalog.tag_groups.values() if group.model_settable for t in group.tags}


def model_facts(facts: Iterable[Fact], catalog: Catalog, *, budget: tuple[float, float]) -> list[Fact]:
    """The model's profile facts that are well-typed and in range, values mapped onto the shop's vocabulary.

    A vocabulary fact keeps only a value of the vocabulary (a synonym is mapped onto its value); a
    budget must read as an amount within ``budget`` (yuan); an age as a number within :data:`AGE_RANGE`.
    Anything else is dropped, never written.
    """
    kept: list[Fact] = []
    for fact in facts:
        value = fact.value.strip()
        vocabulary = catalog.profile.facts.get(fact.key)
        if vocabulary is not None and fact.key not in ("budget", "age"):
            if not vocabulary.values:
                if 0 < len(value) <= 32:
                    kept.append(fact.model_copy(update={"value": value}))
                continue
            name = value if value in vocabulary.values else next(iter(match_values(vocabulary, normalise(value))), None)
            if name is not None:
                kept.append(fact.model_copy(update={"value": name}))
        elif fact.key == "budget":
            amount = parse_amount(normalise(value))
            if amount is not None and budget[0] <= amount.value <= budget[1]:
                kept.append(fact.model_copy(update={"value": f"{amount.value:g}"}))
        elif fact.key == "age":
            age = to_number(value.removesuffix("岁"))
            if age is not None and AGE_RANGE[0] <= age <= AGE_RANGE[1] and age == int(age):
                kept.append(fact.model_copy(update={"value": f"{age:g}"}))
    return kept
