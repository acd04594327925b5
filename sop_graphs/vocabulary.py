"""Matching a shop's profile vocabulary (profile.yaml) in normalised text, negation aware.

Shared by the router (facts stated in chat) and the questionnaire (choice answers), so a slot's answer
and the profile fact of the same name never disagree about what a phrase means.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sop_graphs.shop_data import FactValue, FactVocabulary

# "不是油皮", "我不敏感", "没有长痘", "并非干皮": a negation just before the words cancels them
_NEGATION = re.compile(r"(不是|并不|并非|不算|没有|没|不|非|无)(很|太|怎么|那么|特别|算)?$")


@lru_cache(maxsize=4096)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _hits(text: str, words: list[str]) -> list[int]:
    """Start positions of every occurrence of any word in ``text`` that is not negated."""
    found = []
    for word in words:
        word = word.casefold()
        if not word:
            continue
        start = text.find(word)
        while start >= 0:
            if not _NEGATION.search(text[max(0, start - 4):start]):
                found.append(start)
            start = text.find(word, start + 1)
    return found


def evidence(value: FactValue, text: str, extra: list[str] | None = None) -> int:
    """How much of ``text`` (normalised) states ``value``, not negated: the longest synonym found or the longest
    stretch a description pattern matched (0: not stated). "t区下午油光满面 两边脸颊又干" is 混合皮 by a long
    description, not 油皮 by "油光": the more specific statement wins."""
    best = max((len(w) for w in [*value.synonyms, *(extra or [])] if w and _hits(text, [w])), default=0)
    for pattern in value.patterns:
        m = _pattern(pattern).search(text)
        if m and not _NEGATION.search(text[max(0, m.start() - 4):m.start()]):
            best = max(best, m.end() - m.start())
    return best


def value_matches(value: FactValue, text: str, extra: list[str] | None = None) -> bool:
    """Whether ``text`` (normalised) states ``value`` by a synonym or a description pattern, not negated."""
    return evidence(value, text, extra) > 0


def match_values(vocabulary: FactVocabulary, text: str) -> list[str]:
    """Values of one fact stated in ``text``, the best stated first (what an exclusive fact keeps)."""
    # a value's own name counts as a word for it unless it is a bare token like "是"
    scored = [(evidence(value, text, [name] if len(name) >= 2 else []), name)
              for name, value in vocabulary.values.items()]
    return [name for score, name in sorted(scored, key=lambda sn: -sn[0]) if score > 0]
