"""The model off the write path: a turn's brain calls are made before the turn's write transaction.

For an LLM brain, the inbound processor first *drafts* each ready message turn on read-only connections —
the circuit breaker's decision, understanding, the facts looked up, then the reply — in a bounded pool of
threads (:class:`Drafts`), one turn per customer, so each customer's order holds. The outcome, failures
included, is kept by :class:`MemoBrain` under the turn's exact inputs. Pump passes do not wait for drafts:
they write the turns whose drafts are done, each in its own short transaction, and come back for the others.

Inside a write transaction the memo is *strict*: a call whose inputs were not drafted raises
:class:`NotPrefetched` instead of calling the model, the transaction rolls back and the turn is drafted
again (an operator took over, a tag moved meanwhile). So no database lock is ever held while a model thinks.
The offline brain is fast and is never drafted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agent.brain import Brain
from agent.understanding import Facts, Reply, TurnInput, Understanding


class NotPrefetched(Exception):  # noqa: N818 - a signal, not an error: the turn is drafted again
    """A turn inside its write transaction needed a model call that was not drafted with these inputs."""


@dataclass(frozen=True)
class Drafted:
    """A drafted understanding: the model's (``used_model``), or the router's when the circuit refused the call
    (``failed`` says why when the call was made and failed); with the facts looked up for it, when it has them."""

    understanding: Understanding
    used_model: bool
    failed: str | None = None
    facts: Facts | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    usage: tuple[int, int] = (0, 0)  # model calls and tokens the draft spent (retries included)


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
    """Wraps a brain: drafts keep outcomes (values or exceptions) under their inputs; the ordinary calls take a
    kept outcome once, else call the inner brain — or, inside :meth:`strict`, raise :class:`NotPrefetched`."""

    def __init__(self, inner: Brain, limit: int = 4096) -> None:
        self.inner = inner
        self.name = inner.name
        # several customers may send the same message with the same inputs: one outcome per draft, in order
        self._kept: OrderedDict[str, deque[tuple[bool, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._strict = threading.local()
        self.limit = limit
        self.hits = 0

    def __getattr__(self, name: str) -> Any:  # the inner brain's other attributes (calls, catalog…)
        return getattr(self.inner, name)

    @contextlib.contextmanager
    def strict(self) -> Iterator[None]:
        """Inside a write transaction: a call that was not drafted raises instead of reaching the model."""
        self._strict.on = True
        try:
            yield
        finally:
            self._strict.on = False

    @property
    def in_strict(self) -> bool:
        return bool(getattr(self._strict, "on", False))

    def _put(self, key: str, outcome: tuple[bool, Any]) -> None:
        with self._lock:
            self._kept.setdefault(key, deque()).append(outcome)
            while len(self._kept) > self.limit:
                self._kept.popitem(last=False)

    def _take(self, key: str) -> tuple[bool, Any] | None:
        with self._lock:
            kept = self._kept.get(key)
            outcome = kept.popleft() if kept else None
            if kept is not None and not kept:
                del self._kept[key]
            if outcome is not None:
                self.hits += 1
        return outcome

    def _call(self, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        outcome = self._take(key)
        if outcome is None:
            if self.in_strict:
                raise NotPrefetched(f"{getattr(fn, '__name__', 'call')} was not drafted with these inputs")
            return fn(*args)
        if not outcome[0]:
            raise outcome[1]
        return outcome[1]

    # ---------------------------------------------------------------- drafting (no lock held)

    def keep_drafted(self, turn: TurnInput, routed: Understanding, drafted: Drafted) -> None:
        self._put(_key("drafted", turn, routed), (True, drafted))

    def take_drafted(self, turn: TurnInput, routed: Understanding) -> Drafted | None:
        """The drafted understanding for these inputs; None outside :meth:`strict` when there is none."""
        outcome = self._take(_key("drafted", turn, routed))
        if outcome is None and self.in_strict:
            raise NotPrefetched("the understanding was not drafted with these inputs")
        return outcome[1] if outcome else None

    def prefetch_reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        try:
            value: Any = self.inner.reply(turn, understanding, facts)
        except Exception as exc:  # kept and re-raised by the turn's call, which handles it as always
            self._put(_key("reply", turn, understanding, facts), (False, exc))
            raise
        self._put(_key("reply", turn, understanding, facts), (True, value))
        return value

    # ---------------------------------------------------------------- the Brain protocol

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None,
                   routed: Understanding | None = None) -> Understanding:
        if self.in_strict:
            raise NotPrefetched("understanding is drafted, never called inside a write transaction")
        return self.inner.understand(turn, vector, routed)

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply:
        return self._call(_key("reply", turn, understanding, facts), self.inner.reply, turn, understanding, facts)


DraftState = Literal["none", "pending", "done"]


@dataclass
class _Flight:
    keys: tuple[str, ...]
    future: Future[None]
    redrafts: int = 0


@dataclass
class Drafts:
    """Model calls in flight across pump passes: at most one draft per customer, at most ``size`` at once.

    ``on_done`` is called (from the drafting thread) when a draft finishes, so a waiting pump can wake."""

    size: int
    on_done: Callable[[], None] | None = None
    _flights: dict[str, _Flight] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self, customer_id: str, keys: tuple[str, ...]) -> DraftState:
        """Whether this turn (its event keys) has a draft: none yet (or one for other keys), pending, or done."""
        with self._lock:
            flight = self._flights.get(customer_id)
        if flight is None or (flight.keys != keys and flight.future.done()):
            return "none"
        return "done" if flight.future.done() and flight.keys == keys else "pending"

    def submit(self, customer_id: str, keys: tuple[str, ...], draft: Callable[[], None]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="prefetch")
            previous = self._flights.get(customer_id)
            redrafts = previous.redrafts + 1 if previous is not None and previous.keys == keys else 0
            future = self._pool.submit(draft)
            self._flights[customer_id] = _Flight(keys, future, redrafts)
        if self.on_done is not None:
            callback = self.on_done
            future.add_done_callback(lambda _f: callback())

    def redrafts(self, customer_id: str) -> int:
        with self._lock:
            flight = self._flights.get(customer_id)
            return flight.redrafts if flight is not None else 0

    def forget(self, customer_id: str) -> None:
        """The turn was written (or written without its draft): a late result is left to the memo's bound."""
        with self._lock:
            self._flights.pop(customer_id, None)

    def pending(self) -> int:
        with self._lock:
            return sum(not f.future.done() for f in self._flights.values())

    def customers(self) -> list[str]:
        """Customers with a draft made or in flight that no written turn has used yet."""
        with self._lock:
            return list(self._flights)

    def wait_any(self, timeout: float | None = None) -> None:
        """Block until some pending draft finishes (a simulation's tick waits for its model)."""
        with self._lock:
            futures = [f.future for f in self._flights.values() if not f.future.done()]
        if futures:
            wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._flights.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
