"""Lexical intent rules for customer messages: the deterministic first layer of understanding."""

from __future__ import annotations

import re

from sop_graphs.policy import is_unsubscribe

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("human", re.compile(r"转人工|人工客服|找人工|真人|客服电话")),
    ("complaint", re.compile(r"投诉|差评|太差|垃圾|骗人|坑人|过敏了|烂了|破损|质量问题|气死|什么破|不满意")),
    ("product_interest", re.compile(r"多少钱|价格|怎么卖|有货|适合|推荐|哪款|面霜|精华|防晒|洗面奶|套装|新品|成分")),
    ("purchase_intent", re.compile(r"想买|下单|怎么买|购买|拍了|付款")),
    ("thanks", re.compile(r"谢谢|感谢|多谢|好的|收到")),
    ("bye", re.compile(r"再见|拜拜|没事了|不用了")),
)


def detect_intents(text: str) -> list[str]:
    """Every intent whose rule matches, in rule order; 'unsubscribe' first when present."""
    found = ["unsubscribe"] if is_unsubscribe(text) else []
    found += [name for name, pattern in RULES if pattern.search(text)]
    return found
