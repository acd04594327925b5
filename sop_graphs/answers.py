"""Typed parsing of questionnaire answers in Chinese: choices by synonym, numbers, phones, dates."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sop_graphs.spec import Answer

SKIP_WORDS = ("跳过", "不想说", "不方便说", "保密", "算了", "下一题", "不想回答")
_DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
           "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN_NUMBER = re.compile(r"[零〇一幺二两三四五六七八九十百千万]+")
_ARABIC = re.compile(r"\d+(?:\.\d+)?")
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_ORDINAL = re.compile(r"^(?:第)?([1-9一二三四五六七八九]|[a-hA-H])(?:个|项|种|条)?[.、)]?$")


@dataclass(frozen=True)
class Parsed:
    """Outcome of parsing one answer: a value, a skip, or a reason it was not understood."""

    ok: bool
    value: Any = None
    tags: list[str] = field(default_factory=list)
    skipped: bool = False
    reason: str = ""


def chinese_to_int(text: str) -> int | None:
    """'二十五' -> 25, '两百' -> 200, '三千五' -> 3500, '十' -> 10; None if not a Chinese number."""
    if not text or any(ch not in _DIGITS and ch not in _UNITS for ch in text):
        return None
    total, section, digit = 0, 0, None
    last_unit = 1
    for ch in text:
        if ch in _DIGITS:
            digit = _DIGITS[ch]
        else:
            unit = _UNITS[ch]
            if unit == 10000:
                total += (section + (digit or 0)) * unit
                section, digit, last_unit = 0, None, 10000
                continue
            section += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
    if digit is not None:
        # "三千五" means 3500: a trailing digit after a unit scales to the next lower unit
        section += digit * (last_unit // 10 if last_unit >= 100 and len(text) > 1 and text[-2] in _UNITS else 1)
    return total + section


def parse_number(text: str) -> float | None:
    """First number in ``text``: arabic ('300元', '1.5k'), or Chinese ('二十五', '两百块')."""
    arabic = _ARABIC.search(text)
    if arabic:
        value = float(arabic.group())
        rest = text[arabic.end():arabic.end() + 1].lower()
        if rest in ("k", "千"):
            value *= 1000
        elif rest in ("w", "万"):
            value *= 10000
        return value
    chinese = _CN_NUMBER.search(text)
    if chinese:
        number = chinese_to_int(chinese.group())
        return float(number) if number is not None else None
    return None


def parse_date(text: str, today: date) -> date | None:
    """今天/明天/后天/大后天, 下周一/周三/星期五, 3月5日/3月5号, 5号, 2026-03-05."""
    text = text.strip()
    relative = {"今天": 0, "明天": 1, "后天": 2, "大后天": 3}
    for word, days in sorted(relative.items(), key=lambda kv: -len(kv[0])):
        if word in text:
            return today + timedelta(days=days)
    if m := re.search(r"(\d{4})[-/年](\d{1,2})[-/月](\d{1,2})", text):
        return _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := re.search(r"(下+)?(?:周|星期|礼拜)([一二三四五六日天])", text):
        weeks_ahead = len(m.group(1) or "")
        target = _WEEKDAY[m.group(2)]
        monday = today - timedelta(days=today.weekday())
        candidate = monday + timedelta(weeks=weeks_ahead, days=target)
        if weeks_ahead == 0 and candidate < today:
            candidate += timedelta(weeks=1)
        return candidate
    if m := re.search(r"(\d{1,2}|[一二三四五六七八九十]+)月(\d{1,2}|[一二三四五六七八九十]+)[日号]", text):
        month, day = _num(m.group(1)), _num(m.group(2))
        candidate = _safe_date(today.year, month, day)
        if candidate and candidate < today:
            candidate = _safe_date(today.year + 1, month, day)
        return candidate
    if m := re.search(r"(\d{1,2}|[一二三四五六七八九十]+)[日号]", text):
        day = _num(m.group(1))
        candidate = _safe_date(today.year, today.month, day)
        if candidate and candidate < today:
            month = today.month % 12 + 1
            candidate = _safe_date(today.year + (today.month == 12), month, day)
        return candidate
    return None


def _num(text: str) -> int:
    return int(text) if text.isdigit() else (chinese_to_int(text) or 0)


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_answer(spec: Answer, text: str, today: date) -> Parsed:
    """Parse ``text`` as an answer of type ``spec``."""
    text = (text or "").strip()
    if any(word in text for word in SKIP_WORDS):
        return Parsed(ok=False, skipped=True, reason="skipped")
    if not text:
        return Parsed(ok=False, reason="empty answer")
    match spec.type:
        case "choice":
            return _parse_choice(spec, text)
        case "number":
            number = parse_number(text)
            if number is None:
                return Parsed(ok=False, reason="no number found")
            if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
                return Parsed(ok=False, reason=f"{number:g} is outside {spec.min:g}–{spec.max:g}"
                              if spec.min is not None and spec.max is not None else "out of range")
            return Parsed(ok=True, value=int(number) if number.is_integer() else number)
        case "phone":
            digits = re.sub(r"[\s-]", "", text)
            phone = _PHONE.search(digits)
            return Parsed(ok=True, value=phone.group(1)) if phone else Parsed(ok=False, reason="not a mobile number")
        case "date":
            parsed = parse_date(text, today)
            return Parsed(ok=True, value=parsed.isoformat()) if parsed else Parsed(ok=False, reason="no date found")
        case _:
            if len(text) > 500:
                return Parsed(ok=False, reason="answer too long")
            return Parsed(ok=True, value=text)


def _parse_choice(spec: Answer, text: str) -> Parsed:
    lowered = text.lower()
    chosen = []
    ordinal = _ORDINAL.match(lowered.replace(" ", ""))
    if ordinal:
        token = ordinal.group(1)
        position = (_DIGITS.get(token) or int(token)) if not token.isalpha() or token in _DIGITS else \
            ord(token) - ord("a") + 1
        if 1 <= position <= len(spec.options):
            chosen = [spec.options[position - 1]]
    if not chosen:
        for option in spec.options:
            words = [option.value, *option.synonyms]
            if any(word.lower() in lowered for word in words):
                chosen.append(option)
    if not chosen:
        return Parsed(ok=False, reason="no option matched")
    if len(chosen) > 1 and not spec.multiple:
        return Parsed(ok=False, reason="several options matched: " + "、".join(o.value for o in chosen))
    value: Any = [o.value for o in chosen] if spec.multiple else chosen[0].value
    return Parsed(ok=True, value=value, tags=[t for o in chosen for t in o.tags])
