"""Which profile questions this shop's catalogue makes worth asking.

A profile fact of the library's vocabulary (肤质, 护肤诉求 …) matters to a shop only if its products speak
of it: a small-appliance shop imported beside the default skincare library has no product for 干皮, so
asking an air-fryer buyer about their skin is noise. A fact counts as used when any value's name or
synonym of two or more characters appears in a product's name, description, "suitable for", category or
contraindications. Slots outside the vocabulary (budget, an order number…) are always asked.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, func, select

from knowledge.batching import read_through
from knowledge.tables import Product
from sop_graphs.shop_data import ProfileVocabulary
from sop_graphs.spec import AskStep, SopSpec

_P = Product.__table__.c
_SIZE = select(func.count(), func.max(_P.sku))
_CACHE: dict[tuple[int, int, str | None], frozenset[str]] = {}
_LOCK = threading.Lock()


def unused_slots(conn: Connection, profile: ProfileVocabulary) -> frozenset[str]:
    """The vocabulary's facts no product of the catalogue mentions (empty when there is no catalogue)."""
    # a batch of enrolments asks once (a product written meanwhile drops the answer)
    count, last = read_through(conn, Product.__table__.name, "size", lambda: tuple(conn.execute(_SIZE).one()))
    if not count:
        return frozenset()
    key = (id(profile), count, last)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    text = "\n".join(" ".join([name, description, suitable, category, " ".join(contra or [])]) for
                     name, description, suitable, category, contra in
                     conn.execute(select(_P.name, _P.description, _P.suitable_for, _P.category,
                                         _P.contraindications))).casefold()
    unused = frozenset(slot for slot, vocabulary in profile.facts.items()
                       if not any(word.casefold() in text for value, spec in vocabulary.values.items()
                                  for word in (value, *spec.synonyms) if len(word) >= 2))
    with _LOCK:
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[key] = unused
    return unused


def asks_only_unused(spec: SopSpec, unused: frozenset[str]) -> bool:
    """The SOP exists to ask questions, and every one is about a fact this catalogue does not use."""
    slots = [step.slot for step in spec.steps if isinstance(step, AskStep)]
    return bool(slots) and all(slot in unused for slot in slots)
