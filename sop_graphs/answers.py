"""Typed parsing of questionnaire answers in Chinese: choices by synonym, numbers, phones, dates."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from knowledge.amounts import DECLINE, parse_amount, to_number
from knowledge.text import normalise
from sop_graphs.shop_data import FactValue, FactVocabulary
from sop_graphs.spec import Answer, Choice
from sop_graphs.vocabulary import evidence

SKIP_WORDS = ("跳过", "下一题", "不想回答", "skip", "pass")
_DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
           "八": 8, "九": 9}
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_ORDINAL = re.compile(r"^(?:我)?(?:选|选择|是|要|就|答)?(?:第)?([1-9一二三四五六七八九]|[a-h])(?:个|项|种|条|号)?(?:吧|啊|呀|哈|呢|嗯|的)?[.、)!~。]*$")
_ORDER_REF = re.compile(r"(?<![a-z0-9])([a-z]{0,4}\d{8,26}[a-z]{0,2})(?![a-z0-9])", re.I)


@dataclass(frozen=True)
class Parsed:
    """Outcome of parsing one answer: a value, a skip, or a reason it was not understood."""

    ok: bool
    value: Any = None
    tags: list[str] = field(default_factory=list)
    skipped: bool = False
    reason: str = ""


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
    return int(text) if text.isdigit() else int(to_number(text) or 0)


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_answer(spec: Answer, text: str, today: date, vocabulary: FactVocabulary | None = None) -> Parsed:
    """Parse ``text`` as an answer of type ``spec``; ``vocabulary`` is the shop's profile vocabulary of the
    slot, if it has one (so "T区油，两颊干" answers a skin-type choice)."""
    raw = (text or "").strip()
    text = normalise(raw)
    if any(word in text for word in SKIP_WORDS) or DECLINE.search(text):
        return Parsed(ok=False, skipped=True, reason="skipped")
    if not text:
        return Parsed(ok=False, reason="empty answer")
    match spec.type:
        case "choice":
            return _parse_choice(spec, text, vocabulary)
        case "number":
            amount = parse_amount(text)
            if amount is None:
                return Parsed(ok=False, reason="no number found")
            number = amount.value
            if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
                return Parsed(ok=False, reason=f"{number:g} is outside {spec.min:g}–{spec.max:g}"
                              if spec.min is not None and spec.max is not None else "out of range")
            return Parsed(ok=True, value=int(number) if float(number).is_integer() else number)
        case "phone":
            digits = re.sub(r"[\s-]", "", text)
            phone = _PHONE.search(digits)
            return Parsed(ok=True, value=phone.group(1)) if phone else Parsed(ok=False, reason="not a mobile number")
        case "order":
            compact_text = re.sub(r"[\s-]", "", text)
            phone = _PHONE.search(compact_text)
            code = _ORDER_REF.search(compact_text)
            if code:
                return Parsed(ok=True, value=code.group(1).upper())
            if phone:
                return Parsed(ok=True, value=phone.group(1))
            return Parsed(ok=False, reason="not an order number or phone number")
        case "date":
            parsed = parse_date(text, today)
            return Parsed(ok=True, value=parsed.isoformat()) if parsed else Parsed(ok=False, reason="no date found")
        case _:
            if len(raw) > 500:
                return Parsed(ok=False, reason="answer too long")
            return Parsed(ok=True, value=raw)


def typed_answer(spec: Answer, text: str) -> Any:
    """A stored fact's text as the answer type: numbers as numbers, multiple choices as a list."""
    if spec.type == "number":
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    if spec.type == "choice":
        values = [v for v in re.split(r"[、,]", text) if v in {o.value for o in spec.options}]
        if not values:
            return None
        return values if spec.multiple else values[0]
    return text


def _ordinal(spec: Answer, text: str) -> Choice | None:
    """'2', '我选4', '第二个', 'b', '选3吧': the option at that position."""
    m = _ORDINAL.match(text.replace(" ", ""))
    if not m:
        return None
    token = m.group(1)
    position = int(token) if token.isdigit() else _DIGITS.get(token) or (ord(token) - ord("a") + 1)
    return spec.options[position - 1] if 1 <= position <= len(spec.options) else None


def option_evidence(option: Choice, text: str, vocabulary: FactVocabulary | None) -> int:
    """How strongly ``text`` names ``option``: the longest word or description that matches (0: none)."""
    words = [*([option.value] if len(option.value) >= 2 else []), *option.synonyms]
    best = evidence(FactValue(synonyms=words, patterns=option.patterns), text)
    if vocabulary is not None and option.value in vocabulary.values:
        best = max(best, evidence(vocabulary.values[option.value], text))
    return best


def _parse_choice(spec: Answer, text: str, vocabulary: FactVocabulary | None) -> Parsed:
    single = _ordinal(spec, text)
    if single is not None:
        return Parsed(ok=True, value=[single.value] if spec.multiple else single.value, tags=list(single.tags))
    scored = [(option_evidence(o, text, vocabulary), i, o) for i, o in enumerate(spec.options)]
    chosen = [o for score, _, o in scored if score > 0]
    if not chosen:
        return Parsed(ok=False, reason="no option matched")
    if len(chosen) > 1 and not spec.multiple:
        ranked = sorted(scored, key=lambda item: (-item[0], item[1]))
        if ranked[0][0] == ranked[1][0]:
            return Parsed(ok=False, reason="several options matched: " + "、".join(o.value for o in chosen))
        chosen = [ranked[0][2]]
    value: Any = [o.value for o in chosen] if spec.multiple else chosen[0].value
    return Parsed(ok=True, value=value, tags=[t for o in chosen for t in o.tags])
