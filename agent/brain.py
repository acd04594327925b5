"""The brain interface (DESIGN.md §3): understand a turn, then phrase a grounded reply.

Two implementations: :class:`agent.offline_brain.OfflineBrain` (default, deterministic) and
:class:`agent.llm_brain.LLMBrain` (any OpenAI-compatible endpoint). The runtime, not the brain,
decides what data is read, which tags are allowed and what SOP transitions happen.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from agent.understanding import Facts, Reply, TurnInput, Understanding


class BrainUnavailable(RuntimeError):
    """The brain could not answer after its retry policy (outage, timeouts, malformed output)."""


class ReplyRejected(BrainUnavailable):
    """The endpoint answered, but the reply broke a guardrail (an amount, coupon, tag or refund the facts do not
    back). The offline brain answers instead; this is not an outage, so it does not count against the circuit."""


class Brain(Protocol):
    name: str

    def understand(self, turn: TurnInput, vector: np.ndarray | None = None,
                   routed: Understanding | None = None) -> Understanding: ...

    def reply(self, turn: TurnInput, understanding: Understanding, facts: Facts) -> Reply: ...
