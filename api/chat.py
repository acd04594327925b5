"""A terminal chat session as one customer, on a persisted simulated clock so SOP timing stays coherent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rich.text import Text
from sqlalchemy import select

from agent.inbound import submit
from agent.runtime import Runtime
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag
from sop_graphs.tables import Outbox, SopRun

CLOCK = "chat"


@dataclass
class ChatSession:
    runtime: Runtime
    customer_id: str
    name: str
    seq: int = 0

    @classmethod
    def open(cls, settings: Settings, customer_id: str, name: str) -> ChatSession:
        clock = SimClock(datetime.now(UTC).replace(microsecond=0))
        runtime = Runtime.build(settings, clock=clock)
        saved = runtime.saved_clock(CLOCK)
        if saved is not None and saved > clock.now():
            clock.set(saved)
        runtime.load_demo_shop()
        return cls(runtime, customer_id, name)

    def _now(self) -> datetime:
        return self.runtime.deps.clock.now()

    def _state(self) -> tuple[set[str], set[str], int]:
        with self.runtime.deps.engine.connect() as conn:
            tags = set(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == self.customer_id))
                       .scalars())
            runs = {f"{s}:{(w or '').split(':')[1] if w and ':' in w else st}" for s, w, st in conn.execute(
                select(SopRun.sop_id, SopRun.waiting, SopRun.status).where(SopRun.customer_id == self.customer_id,
                                                                           SopRun.status.in_(("running", "waiting",
                                                                                              "scheduled"))))}
            last = conn.execute(select(Outbox.id).order_by(Outbox.id.desc())).scalar() or 0
        return tags, runs, last

    def _advance(self, seconds: float) -> None:
        self.runtime.run_until(self._now() + timedelta(seconds=seconds), persist_as=CLOCK)

    def _block(self, before: tuple[set[str], set[str], int]) -> Text:
        tags, runs, last = before
        new_tags, new_runs, _ = self._state()
        with self.runtime.deps.engine.connect() as conn:
            sent = conn.execute(select(Outbox.payload, Outbox.sop_id, Outbox.step_id, Outbox.status, Outbox.action)
                                .where(Outbox.customer_id == self.customer_id, Outbox.id > last,
                                       Outbox.action != "tag").order_by(Outbox.id)).all()
        out = Text()
        for payload, sop_id, step_id, status, action in sent:
            if action == "task":  # an employee's to-do, never shown to the customer: name it only
                out.append(f"  员工任务: {payload.get('title', '')}\n", style="magenta")
                continue
            who = f"[{sop_id}/{step_id}]" if sop_id else "[回复]"
            text = payload.get("text") or payload.get("title") or payload.get("campaign") or ""
            out.append(f"助手 {who}{'' if status == 'sent' else f'（{status}）'}: ", style="bold green")
            out.append(f"{text}\n")
        if new_tags != tags:
            out.append(f"  标签: +{sorted(new_tags - tags)} -{sorted(tags - new_tags)}\n", style="cyan")
        if new_runs != runs:
            out.append(f"  SOP: {sorted(new_runs)}\n", style="magenta")
        return out

    def start(self) -> list[Text]:
        with self.runtime.deps.engine.connect() as conn:
            exists = conn.execute(select(Customer.id).where(Customer.id == self.customer_id)).first()
        if exists:
            return [Text(f"继续与 {self.customer_id} 的对话（模拟时钟 {self._now():%Y-%m-%d %H:%M} UTC）")]
        before = self._state()
        submit(self.runtime.deps, key=f"chat-add/{self.customer_id}", customer_id=self.customer_id,
               kind="customer_added", payload={"name": self.name}, at=self._now())
        self._advance(5)
        return [Text(f"新客户 {self.customer_id} 添加了好友"), self._block(before)]

    def say(self, text: str) -> Text:
        before = self._state()
        self.seq += 1
        now = self._now()
        submit(self.runtime.deps, key=f"chat/{self.customer_id}/{now.isoformat()}/{self.seq}",
               customer_id=self.customer_id, kind="message", payload={"text": text}, at=now)
        self._advance(self.runtime.deps.settings.burst_window_seconds + 5)
        block = Text()
        block.append("客户: ", style="bold")
        block.append(f"{text}\n")
        block.append_text(self._block(before))
        return block
