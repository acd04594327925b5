"""Amounts and quantities as shoppers write them: exact, ranges, bounds and approximations.

Numerals are converted with cn2an ("两百五" → 250, "3百" → 300, "1.5万" → 15000); what the words
around them mean ("四五百" is 400–500, "不到两百" is below 200, "一千出头" a little over 1000) is
read here, since no library reads Chinese range and bound phrasing. Input is normalised text.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import cn2an

_CN = "零〇一二两三四五六七八九十百千万幺"
_UNIT = {"十": 10, "百": 100, "千": 1000, "k": 1000, "万": 10000, "w": 10000}
_DIGIT = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# "四五百", "一两百", "两三千", "七八十": two neighbouring digits before a unit
_PAIR = re.compile(r"(?<![\d" + _CN + r"])([一二两三四五六七八九])([二两三四五六七八九])([十百千万])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[百千万kw](?:\d(?![\d.]))?)?|[" + _CN + r"]+")
_SEP = r"\s*(?:-|~|到|至|—|–|或)\s*"
DECLINE = re.compile(r"保密|不(太|是很|大)?方便(说|讲|透露)?|不(太)?想(说|讲|透露|告诉)|不告诉|不便透露|隐私|看情况|不一定|没想好|"
                     r"不好说|随缘|说不准|prefer not|rather not")
_UPPER = re.compile(r"(不到|不超过|不超|低于|少于|最多|顶多|控制在|别超过)\s*$")
_UPPER_AFTER = re.compile(r"^\s*(以内|以下|之内|内|封顶|左右以内)")
_LOWER = re.compile(r"(超过|至少|起码|不低于|高于|多于|最少)\s*$")
_LOWER_AFTER = re.compile(r"^\s*(以上|起|往上|\+|多|出头|来块|来)")
_APPROX_AFTER = re.compile(r"^\s*(左右|上下|的样子|差不多)")
_CURRENCY = re.compile(r"^\s*(块钱|块|元|rmb|米|¥)")
_PERCENT_AFTER = re.compile(r"^\s*(%|折)")


@dataclass(frozen=True)
class Amount:
    """A number a customer gave: ``low``–``high`` (equal for an exact number), and one representative value.

    ``value`` is what a single-number slot stores: the number itself, a range's midpoint, just under an
    upper bound ("不到两百" → 199) or the bound itself for a lower bound ("五百以上" → 500).
    """

    low: float
    high: float
    value: float
    kind: str  # exact, approx, range, upper, lower

    def __str__(self) -> str:
        return f"{self.value:g}"


def to_number(token: str) -> float | None:
    """One numeral: arabic, Chinese or mixed ('3百', '1.5万', '两百五', '1k')."""
    token = token.strip().lower()
    if not token:
        return None
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([kw])(\d?)", token):
        base = float(m.group(1)) * _UNIT[m.group(2)]
        return base + (int(m.group(3)) * _UNIT[m.group(2)] / 10 if m.group(3) else 0)
    if re.fullmatch(r"\d+(?:\.\d+)?", token):
        return float(token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(cn2an.cn2an(token, "smart"))
        except (ValueError, KeyError, IndexError, TypeError):
            return None


def _pair_range(text: str) -> str:
    """Rewrite '四五百' as '400到500' so the range reader sees two numbers."""

    def repl(m: re.Match[str]) -> str:
        a, b, unit = _DIGIT[m.group(1)], _DIGIT[m.group(2)], _UNIT[m.group(3)]
        return f"{a * unit}到{b * unit}" if b == a + 1 else m.group(0)

    return _PAIR.sub(repl, text)


def _shared_unit(first: str, second: str) -> str:
    """'3到5百' → the first number takes the second's unit: '3百'."""
    unit = re.search(r"[百千万kw]$", second)
    if unit and re.fullmatch(r"\d+(?:\.\d+)?|[一二两三四五六七八九]", first):
        return first + unit.group()
    return first


def numbers(text: str) -> list[tuple[float, int, int]]:
    """Every numeral in ``text`` as (value, start, end)."""
    found = []
    for m in _NUMBER.finditer(text):
        value = to_number(m.group())
        if value is not None:
            found.append((value, m.start(), m.end()))
    return found


def parse_amount(text: str) -> Amount | None:
    """The amount a (normalised) message gives, with its range or bound; None if it gives none."""
    if not text:
        return None
    text = _pair_range(text)
    if m := re.search(r"(" + _NUMBER.pattern + r")" + _SEP + r"(" + _NUMBER.pattern + r")", text):
        second = to_number(m.group(2))
        first = to_number(_shared_unit(m.group(1), m.group(2)))
        if first is not None and second is not None and first < second:
            return Amount(first, second, (first + second) / 2, "range")
    found = numbers(text)
    if not found:
        return None
    value, start, end = found[0]
    before, after = text[:start], _CURRENCY.sub("", text[end:], count=1)
    if _PERCENT_AFTER.match(after):
        return None
    if _UPPER.search(before) or _UPPER_AFTER.match(after):
        return Amount(0, value, max(value - 1, 0), "upper")
    if m := _LOWER_AFTER.match(after):
        word = m.group(1)
        if word in ("多", "出头", "来块", "来"):
            step = _step(value)
            high = value + (step * 0.3 if word == "出头" else step if word == "多" else step * 0.2)
            return Amount(value, high, (value + high) / 2 if word != "来块" and word != "来" else value, "approx")
        return Amount(value, float("inf"), value, "lower")
    if _LOWER.search(before):
        return Amount(value, float("inf"), value, "lower")
    kind = "approx" if _APPROX_AFTER.match(after) or re.search(r"(大概|大约|差不多|估计|约)\s*$", before) else "exact"
    return Amount(value, value, value, kind)


def _step(value: float) -> float:
    """The place value a '多'/'出头' refers to: 三百多 → 100, 一千出头 → 1000, 五十多 → 10."""
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    return magnitude
