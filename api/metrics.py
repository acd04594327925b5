"""Prometheus metrics: turns and their latency, sends by mode, deferrals, LLM errors and the LLM circuit, queue
depth, callbacks.

Each service has its own registry. Engine components keep plain counters; :meth:`Metrics.collect`
(called after every pump pass) turns their growth into Prometheus counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.breaker import CircuitState

if TYPE_CHECKING:
    from api.service import Service


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter("sopagent_turns", "Conversation turns answered", registry=r)
        self.turn_seconds = Histogram("sopagent_turn_seconds", "Time to compose a reply", registry=r,
                                      buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.llm_errors = Counter("sopagent_llm_errors", "Turns the LLM could not serve (offline fallback)",
                                  registry=r)
        self.brain_circuit = Gauge("sopagent_brain_circuit_state", "LLM circuit breaker: 1 for the current state",
                                   ["state"], registry=r)
        self.brain_failures = Gauge("sopagent_brain_consecutive_failures", "Consecutive LLM failures now",
                                    registry=r)
        self.brain_opened = Counter("sopagent_brain_circuit_opened", "Times the LLM circuit opened", registry=r)
        self.brain_short_circuited = Counter("sopagent_brain_short_circuited",
                                             "LLM calls not made because the circuit was open", registry=r)
        self.handoffs = Counter("sopagent_handoffs", "Conversations handed to a human", registry=r)
        self.sends = Counter("sopagent_sends", "Outbound actions sent", ["mode"], registry=r)
        self.deferrals = Counter("sopagent_deferrals", "Sends deferred by the contact policy", registry=r)
        self.callbacks = Counter("sopagent_callbacks", "Callbacks received", ["result"], registry=r)
        self.callbacks_applied = Counter("sopagent_callbacks_applied", "Callbacks processed", ["result"], registry=r)
        self.queue = Gauge("sopagent_queue_depth", "Work waiting now", ["queue"], registry=r)
        self._seen: dict[str, int] = {}

    def _grow(self, name: str, value: int) -> int:
        delta = value - self._seen.get(name, 0)
        self._seen[name] = value
        return max(delta, 0)

    def collect(self, service: Service) -> None:
        stats = service.runtime.worker.stats
        for key, value in list(stats.items()):
            if key.startswith("sent:"):
                self.sends.labels(mode=key[5:]).inc(self._grow(key, value))
        self.deferrals.inc(self._grow("deferred", stats.get("deferred", 0)))
        conversation = service.runtime.conversation
        if conversation is not None:
            self.turns.inc(self._grow("turns", conversation.stats["turns"]))
            self.llm_errors.inc(self._grow("llm_errors", conversation.stats["llm_errors"]))
            self.handoffs.inc(self._grow("handoffs", conversation.stats["handoffs"]))
            while conversation.durations:
                self.turn_seconds.observe(conversation.durations.popleft())
        processor = service.processor.stats
        self.callbacks_applied.labels(result="done").inc(self._grow("cb_done", processor["processed"]))
        self.callbacks_applied.labels(result="failed").inc(self._grow("cb_failed", processor["failed"]))

    def render(self, service: Service) -> bytes:
        for name, depth in service.queue_depth().items():
            self.queue.labels(queue=name).set(depth)
        conversation = service.runtime.conversation
        if conversation is not None:
            status = conversation.breaker.status()
            for state in CircuitState:
                self.brain_circuit.labels(state=state.value).set(1 if status.state is state else 0)
            self.brain_failures.set(status.consecutive_failures)
            self.brain_opened.inc(self._grow("brain_opened", status.opened_total))
            self.brain_short_circuited.inc(self._grow("brain_short_circuited", status.short_circuited_total))
        return generate_latest(self.registry)
