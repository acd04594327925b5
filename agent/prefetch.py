"""The model off the write path: a turn's brain calls are made before the turn's write transaction.

For an LLM brain, the inbound processor first *prefetches* each ready message turn on a read-only
connection — understanding, then the reply to the facts looked up — for several customers at once (a
bounded thread pool; one turn per customer, so each customer's order holds). The results, failures
included, are memoised by their exact inputs. The write transaction then runs the turn as always; its brain
calls find the memo (same inputs) and return at once, so no database lock is held while a model thinks.
If anything changed in between (an operator took over, a tag moved), the inputs differ, the memo misses and
the call is made then: correct, only slower. The offline brain is fast and is never prefetched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections import OrderedDict, deque
from typing import Any

import numpy as np

from agent.brain import Brain
from agent.understanding import Facts, Reply, TurnInput, Understanding


def _key(method: str, *parts: Any) -> str:
    def plain(value: Any) -> Any:
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    text = json.dumps([method, *map(plain, parts)], ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class MemoBrain:
    """Wraps a brain: ``prefetch_*`` calls the inner brain and keeps the outcome (value or exception) under its
    inputs; the ordinary calls take a kept outcome once, else call the inner brain."""

    def __init__(self, inner: Brain, limit: int = 4096) -> None:
        self.inner = inner
        self.name = inner.name
        # several customers may send the same message with the same inputs: one outcome per prefetch, in order
        self._kept: OrderedDict[str, deque[tuple[bool, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit
        self.hits = 0

    def __getattr__(self, name: str) -> Any:  # the inner brain's other attributes (calls, catalog…)
        return getattr(self.inner, name)

    def _keep(self, key: str, fn: Any, *args: Any) -> Any:
        try:
            value: Any = fn(*args)
            outcome = (True, value)
        except Exception as exc:  # kept and re-raised by the real call, which handles it as always
            outcome = (False, exc)
        with self._lock:
            self._kept.setdefault(key, deque()).append(outcome)
            while len(self._kept) > self.limit:
                self._kept.popitem(last=False)
        if not outcome[0]:
            raise outcome[1]
        return outcome[1]

    def _take(self, key: str) -> tuple[bool, Any] | None:
        with self._lock:
            kept = self._kept.get(key)
            outcome = kept.popleft() if kept else None
            if kept is not None and not kept:
                del self._kept[key]
            if outcome is not None:
                self.hits += 1
        return outcome

    def prefetch_understand(self, turn: TurnInput, vector: np.ndarray | None, routed: Understanding) -> Understanding:
        return self._keep(_key("understand", turn, routed), self.inner.understand, turn, vector, routed)

    def prefetch_reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        return self._keep(_key("reply", turn, understanding, facts), self.inner.reply, turn, understanding, facts)

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None,
                   routed: Understanding | None = None) -> Understanding:
        outcome = self._take(_key("understand", turn, routed))
        if outcome is None:
            return self.inner.understand(turn, vector, routed)
        if not outcome[0]:
            raise outcome[1]
        return outcome[1]

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        outcome = self._take(_key("reply", turn, understanding, facts))
        if outcome is None:
            return self.inner.reply(turn, understanding, facts)
        if not outcome[0]:
            raise outcome[1]
        return outcome[1]
