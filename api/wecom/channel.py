"""The WeCom channel: outbox deliveries become WeCom API calls by delivery mode (wecom.md §2).

- ``kf``: kf/send_msg with a msgid derived from the outbox key (WeCom's own idempotency key).
- ``welcome``: send_welcome_msg with the add event's code, one call per customer (41051 = already sent).
- ``member_task`` / ``group_task``: add_msg_template batches per employee (≤ 10,000 customers per call),
  then polled, reminded (≤ 3 per 24 h) and cancelled at expiry by :meth:`WeComChannel.poll`.
- ``moment_task``: add_moment_task; ``task``: an app message reminding the assignee.
- ``tag`` actions: mark_tag with corp tag ids (missing tags created once).

add_msg_template has no idempotency key, so every outbox key is recorded in ``WecomDelivery`` in the
same breath as the call; a redelivered key is skipped. What WeCom refuses becomes an employee task
(never a silent drop); transport failures raise so the dispatcher retries the batch later.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from api import people
from api.tables import KfSession, MassTask, WecomContact, WecomDelivery
from api.wecom.client import (
    SESSION_STATE_INVALID,
    WELCOME_ALREADY_SENT,
    WELCOME_BUSY,
    WeComClient,
    WeComError,
)
from knowledge.clock import Clock, as_utc
from knowledge.db import any_of, insert_ignore, run_in
from knowledge.settings import Settings
from knowledge.tables import Customer
from sop_graphs.channel import Delivery
from sop_graphs.customers import BROADCAST, WEB_PREFIX
from sop_graphs.effects import Effects
from sop_graphs.tables import EmployeeTask

log = logging.getLogger("sopagent.wecom")
MASS_LIMIT = 10_000
WELCOME_WINDOW = timedelta(seconds=20)
REMIND_EVERY = timedelta(hours=8)  # at most 3 reminders in 24 h
MAX_REMINDERS = 3
_W = WecomDelivery.__table__.c
_DELIVERED_IN = select(_W.key).where(any_of(_W.key))
_OWNERS_IN = select(Customer.__table__.c.id, Customer.__table__.c.owner).where(any_of(Customer.__table__.c.id))


def kf_msgid(key: str) -> str:
    """Our kf msgid for an outbox key: ≤ 32 chars of [0-9a-f], stable across retries."""
    return hashlib.sha1(key.encode()).hexdigest()[:32]


def content_of(delivery: Delivery) -> str:
    """The text a customer sees for an action: message text plus its link, QR code or coupon code."""
    p = delivery.payload
    text = str(p.get("text") or p.get("title") or "")
    if delivery.action == "coupon" and p.get("code"):
        text += f"\n券码：{p['code']}"
    if p.get("qr_url"):
        text += f"\n{p['qr_url']}"
    elif p.get("url"):
        text += f"\n{p['url']}"
    return text


def hand_to_employee(conn: Connection, now: datetime, customer_id: str, *, key: str, title: str,
                     content: dict[str, Any], note_key: str, summary: str) -> None:
    """A message WeCom would not (or did not) deliver becomes a send task for the customer's employee."""
    owner = conn.execute(select(Customer.__table__.c.owner)
                         .where(Customer.__table__.c.id == customer_id)).scalar() or "owner"
    insert_ignore(conn, EmployeeTask.__table__, [{
        "key": key, "customer_id": customer_id, "assignee": owner, "kind": "send_private", "title": title,
        "content": content, "due_at": as_utc(now), "status": "open", "created_at": as_utc(now)}])
    effects = Effects()
    effects.note(customer_id=customer_id, at=now, kind="task", key=note_key, summary=summary)
    effects.flush(conn)


class WeComChannel:
    """Delivers outbox actions through :class:`WeComClient`; idempotent by outbox key."""

    def __init__(self, settings: Settings, engine: Engine, client: WeComClient, clock: Clock) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.clock = clock
        self._tag_ids: dict[str, str] = {}
        self._owners: dict[str, str] = {}

    # ------------------------------------------------------------------ bookkeeping

    def _done_keys(self, keys: list[str]) -> set[str]:
        with self.engine.connect() as conn:
            return {key for (key,) in run_in(conn, _DELIVERED_IN, keys)}

    def _record(self, rows: list[dict[str, Any]]) -> None:
        now = as_utc(self.clock.now())
        with self.engine.begin() as conn:
            insert_ignore(conn, WecomDelivery.__table__, [{"detail": {}, "wecom_id": None, **r, "at": now}
                                                          for r in rows])

    def _fallback(self, delivery: Delivery, reason: str) -> None:
        """What WeCom would not take becomes a to-do for the customer's employee, with the reason."""
        with self.engine.begin() as conn:
            hand_to_employee(conn, self.clock.now(), delivery.customer_id, key=f"wecom-fallback/{delivery.key}",
                             title=f"请手动发送（{reason}）", content=dict(delivery.payload),
                             note_key=f"fallback/{delivery.key}", summary=f"企业微信未能自动发送（{reason}），已转为员工待办")
        self._record([{"key": delivery.key, "customer_id": delivery.customer_id, "mode": delivery.mode,
                       "result": "task", "detail": {"reason": reason}}])

    # ------------------------------------------------------------------ deliver

    def deliver(self, deliveries: Sequence[Delivery]) -> None:
        done = self._done_keys([d.key for d in deliveries])
        self._load_owners(deliveries)
        welcome: dict[str, list[Delivery]] = defaultdict(list)
        mass: dict[tuple[str, str, str], list[Delivery]] = defaultdict(list)
        for d in deliveries:
            if d.key in done:
                continue
            if d.customer_id.startswith(WEB_PREFIX):  # the /chat response carries it
                self._record([{"key": d.key, "customer_id": d.customer_id, "mode": "web", "result": "sent"}])
                continue
            try:
                if d.action == "tag":
                    self._tag(d)
                elif d.mode == "kf":
                    self._kf(d)
                elif d.mode == "welcome":
                    welcome[d.customer_id].append(d)
                elif d.mode in ("member_task", "group_task"):
                    kind = "group" if d.mode == "group_task" else "single"
                    mass[(kind, self._sender(d), content_of(d))].append(d)
                elif d.mode == "moment_task":
                    self._moment(d)
                elif d.mode == "task":
                    self._remind_employee(d)
                elif d.mode == "app_markdown":
                    self._app_markdown(d)
                else:
                    self._fallback(d, f"unknown delivery mode {d.mode}")
            except WeComError as exc:
                log.warning("wecom refused %s (%s): %s", d.key, d.mode, exc)
                self._fallback(d, f"errcode {exc.errcode}")
        for customer_id, items in welcome.items():
            self._welcome(customer_id, items)
        for (kind, sender, text), items in mass.items():
            self._mass(kind, sender, text, items)

    def _load_owners(self, deliveries: Sequence[Delivery]) -> None:
        """Owners (employee userids) of a batch's customers, read once per batch rather than per action."""
        ids = list({d.customer_id for d in deliveries if d.customer_id and d.customer_id != BROADCAST})
        with self.engine.connect() as conn:
            self._owners = {cid: owner for cid, owner in run_in(conn, _OWNERS_IN, ids)}

    def _sender(self, d: Delivery) -> str:
        return self._owners.get(d.customer_id) or str(d.payload.get("sender") or d.payload.get("assignee") or "")

    def _kf(self, d: Delivery) -> None:
        with self.engine.connect() as conn:
            session = conn.execute(select(KfSession.__table__).where(
                KfSession.__table__.c.customer_id == d.customer_id)).mappings().first()
        if session is None:
            self._fallback(d, "客户不在微信客服会话中")
            return
        if session["service_state"] == 3:
            self._fallback(d, "会话已由人工接待")
            return
        msgid = kf_msgid(d.key)
        self.client.kf_send_text(touser=d.customer_id, open_kfid=session["open_kfid"], msgid=msgid,
                                 content=content_of(d))
        self._record([{"key": d.key, "customer_id": d.customer_id, "mode": "kf", "result": "sent",
                       "wecom_id": msgid}])

    def _welcome(self, customer_id: str, items: list[Delivery]) -> None:
        now = self.clock.now()
        with self.engine.connect() as conn:
            contact = conn.execute(select(WecomContact.__table__).where(
                WecomContact.__table__.c.customer_id == customer_id)).mappings().first()
        fresh = (contact is not None and contact["welcome_code"] and not contact["welcome_used"]
                 and contact["welcome_code_at"] is not None
                 and as_utc(now) - as_utc(contact["welcome_code_at"]) <= WELCOME_WINDOW)
        if not fresh:
            for d in items:
                self._fallback(d, "欢迎语窗口（20 秒）已过或没有 WelcomeCode")
            return
        text = "\n".join(content_of(d) for d in items)
        for attempt in range(3):
            try:
                self.client.send_welcome(welcome_code=contact["welcome_code"], content=text)
                break
            except WeComError as exc:
                if exc.errcode == WELCOME_ALREADY_SENT:
                    break
                if exc.errcode != WELCOME_BUSY or attempt == 2:
                    for d in items:
                        self._fallback(d, f"欢迎语发送失败 errcode {exc.errcode}")
                    return
        with self.engine.begin() as conn:
            conn.execute(update(WecomContact.__table__).where(WecomContact.__table__.c.customer_id == customer_id)
                         .values(welcome_used=True))
        self._record([{"key": d.key, "customer_id": customer_id, "mode": "welcome", "result": "sent"} for d in items])

    def _mass(self, kind: str, sender: str, text: str, items: list[Delivery]) -> None:
        if not sender:
            for d in items:
                self._fallback(d, "没有可用的发送员工")
            return
        now = self.clock.now()
        expires = now + timedelta(hours=self.settings.member_task_expiry_hours)
        for start in range(0, len(items), MASS_LIMIT):
            chunk = items[start:start + MASS_LIMIT]
            customers = [d.customer_id for d in chunk if d.customer_id != BROADCAST]
            try:
                data = self.client.add_msg_template(sender=sender, content=text, chat_type=kind,  # type: ignore[arg-type]
                                                    external_userids=customers if kind == "single" else None)
            except WeComError as exc:
                for d in chunk:
                    self._fallback(d, f"群发任务创建失败 errcode {exc.errcode}")
                continue
            msgid = str(data.get("msgid", ""))
            with self.engine.begin() as conn:
                insert_ignore(conn, MassTask.__table__, [{
                    "wecom_msgid": msgid, "kind": kind, "sender": sender, "content": text,
                    "keys": [d.key for d in chunk], "customer_ids": customers, "created_at": as_utc(now),
                    "expires_at": as_utc(expires), "status": "open"}])
            self._record([{"key": d.key, "customer_id": d.customer_id, "mode": f"{kind}_task", "result": "sent",
                           "wecom_id": msgid, "detail": {"fail_list": data.get("fail_list", [])}} for d in chunk])

    def _moment(self, d: Delivery) -> None:
        sender = self._sender(d)
        data = self.client.add_moment_task(content=content_of(d), senders=[sender] if sender else [])
        self._record([{"key": d.key, "customer_id": d.customer_id, "mode": "moment_task", "result": "sent",
                       "wecom_id": str(data.get("jobid", ""))}])

    def _remind_employee(self, d: Delivery) -> None:
        role = str(d.payload.get("assignee") or "")  # a task for a role (or a person) reaches its people's WeCom
        assignee = "|".join(people.userids_of(self.engine, role)) if role else ""
        assignee = assignee or self._sender(d) or "@all"
        if d.payload.get("task_kind") == "handoff":
            self._transfer(d.customer_id, assignee)
        text = f"【待办】{d.payload.get('title', '')}\n{d.payload.get('text', '')}".strip()
        self.client.app_message(touser=assignee, content=text)
        self._record([{"key": d.key, "customer_id": d.customer_id, "mode": "task", "result": "sent"}])

    def _app_markdown(self, d: Delivery) -> None:
        """A markdown app message to employees (the daily report's summary to operators)."""
        self.client.app_markdown(touser=str(d.payload.get("touser") or "@all"), content=str(d.payload.get("text", "")))
        self._record([{"key": d.key, "customer_id": d.customer_id, "mode": "app_markdown", "result": "sent"}])

    def _transfer(self, customer_id: str, servicer: str) -> None:
        """Hand a kf conversation to a human servicer (state 3), or to the waiting pool (2) if none is known."""
        with self.engine.connect() as conn:
            session = conn.execute(select(KfSession.__table__).where(
                KfSession.__table__.c.customer_id == customer_id)).mappings().first()
        if session is None or session["service_state"] == 3:
            return
        state = 3 if servicer and servicer != "@all" else 2
        try:
            self.client.kf_trans(open_kfid=session["open_kfid"], external_userid=customer_id, service_state=state,
                                 servicer_userid=servicer if state == 3 else None)
        except WeComError as exc:
            if exc.errcode != SESSION_STATE_INVALID:
                raise
            log.info("kf session of %s not in state 0/1; left as is", customer_id)
            return
        with self.engine.begin() as conn:
            conn.execute(update(KfSession.__table__).where(KfSession.__table__.c.customer_id == customer_id)
                         .values(service_state=state))

    def _tag(self, d: Delivery) -> None:
        add, remove = list(d.payload.get("add", [])), list(d.payload.get("remove", []))
        missing = [t for t in {*add, *remove} if t not in self._tag_ids]
        if missing:
            self._tag_ids.update(self.client.corp_tags())
            absent = [t for t in add if t not in self._tag_ids]
            if absent:
                self._tag_ids.update(self.client.add_corp_tags(absent))
        userid = self._sender(d)
        self.client.mark_tag(userid=userid, external_userid=d.customer_id,
                             add=[self._tag_ids[t] for t in add if t in self._tag_ids],
                             remove=[self._tag_ids[t] for t in remove if t in self._tag_ids])
        self._record([{"key": d.key, "customer_id": d.customer_id, "mode": "api", "result": "sent"}])

    # ------------------------------------------------------------------ mass-send follow-up

    def poll(self) -> int:
        """Check open mass-send tasks: done when sent, remind the sender, cancel at expiry."""
        now = self.clock.now()
        with self.engine.connect() as conn:
            tasks = conn.execute(select(MassTask.__table__).where(MassTask.__table__.c.status == "open")
                                 ).mappings().all()
        for task in tasks:
            try:
                self._poll_one(task, now)
            except WeComError as exc:
                log.warning("mass task %s: %s", task["wecom_msgid"], exc)
        return len(tasks)

    def _poll_one(self, task: Any, now: datetime) -> None:
        values: dict[str, Any] = {}
        if task["kind"] == "single":
            result = self.client.groupmsg_result(msgid=task["wecom_msgid"], userid=task["sender"])
            sent = sum(1 for r in result.get("send_list", []) if int(r.get("status", 0)) == 1)
            values["sent_count"] = sent
            if task["customer_ids"] and sent >= len(task["customer_ids"]):
                values["status"] = "done"
        if "status" not in values:
            if as_utc(now) >= as_utc(task["expires_at"]):
                self.client.cancel_groupmsg(task["wecom_msgid"])
                values["status"] = "cancelled"
            elif task["reminders"] < MAX_REMINDERS and \
                    as_utc(now) - as_utc(task["last_remind_at"] or task["created_at"]) >= REMIND_EVERY:
                self.client.remind_groupmsg(task["wecom_msgid"])
                values |= {"reminders": task["reminders"] + 1, "last_remind_at": as_utc(now)}
        if values:
            with self.engine.begin() as conn:
                conn.execute(update(MassTask.__table__).where(MassTask.__table__.c.id == task["id"]).values(**values))
