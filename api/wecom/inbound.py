"""Turns stored WeCom callbacks into inbound events: contact and group changes, and 微信客服 messages.

A callback row is processed once (status done); API failures leave it pending for a later attempt
(up to ``MAX_ATTEMPTS``). kf messages are pulled with kf/sync_msg from the cursor persisted per kf
account, deduped by msgid (the inbound event key), and the cursor is saved in the same transaction
as the events it covered, so a crash neither loses nor repeats a message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from agent.inbound import submit
from agent.tables import InboundEvent
from api.tables import KfSession, WecomCallback, WecomContact, WecomDelivery
from api.wecom.channel import hand_to_employee, kf_msgid
from api.wecom.client import WeComClient, WeComError
from api.wecom.messages import parse_message
from knowledge.clock import Clock, as_utc
from knowledge.db import insert_ignore, upsert
from knowledge.tables import Customer
from sop_graphs.deps import Deps
from sop_graphs.render import reply_text
from sop_graphs.tables import Outbox, WorkerState

log = logging.getLogger("sopagent.wecom")
MAX_ATTEMPTS = 5
_CB = WecomCallback.__table__.c
_SETTLE = update(WecomCallback.__table__).where(_CB.id == bindparam("rid")).values(
    status=bindparam("status"), attempts=bindparam("attempts"), error=bindparam("error"))
KF_CUSTOMER, KF_EVENT, KF_SERVICER = 3, 4, 5
HUMAN_STATES = {1: 3, 2: 3, 4: 3}  # session_status_change change_type → service state (3 = human)


class CallbackProcessor:
    """Applies pending callbacks in arrival order."""

    def __init__(self, deps: Deps, client: WeComClient | None, inbox: Engine | None = None) -> None:
        self.deps = deps
        self.engine: Engine = deps.engine
        self.inbox: Engine = inbox or deps.engine  # where callbacks are stored (see Service)
        self.clock: Clock = deps.clock
        self.client = client
        self.stats: dict[str, int] = {"processed": 0, "failed": 0, "kf_messages": 0}

    def process(self, limit: int = 500) -> int:
        """Apply up to ``limit`` pending callbacks. Their statuses are written in one short transaction at
        the end (the inbox stays free for the HTTP writer); a crash before that re-applies them, which is
        harmless because every effect is keyed (event keys, msgids, the kf cursor)."""
        query = select(WecomCallback.__table__).where(_CB.status == "pending").order_by(_CB.id).limit(limit)
        if self.inbox.dialect.name != "postgresql":
            with self.inbox.connect() as conn:
                rows = conn.execute(query).mappings().all()
            results = self._apply(rows)
            if results:
                with self.inbox.begin() as conn:
                    conn.execute(_SETTLE, results)
            return len(rows)
        # several workers: each claims the callbacks no other holds, keeps them locked while it applies them and
        # settles them in the same transaction (a worker that dies releases them with its connection)
        with self.inbox.begin() as conn:
            rows = conn.execute(query.with_for_update(skip_locked=True)).mappings().all()
            results = self._apply(rows)
            if results:
                conn.execute(_SETTLE, results)
        return len(rows)

    def _apply(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        results = []
        for row in rows:
            status, error = "done", None
            try:
                self._handle(row["key"], parse_message(row["body"]))
                self.stats["processed"] += 1
            except (WeComError, httpx.TransportError) as exc:
                error = str(exc)
                status = "failed" if row["attempts"] + 1 >= MAX_ATTEMPTS else "pending"
                log.warning("callback %s: %s (attempt %d)", row["key"], exc, row["attempts"] + 1)
            except Exception as exc:  # a callback we cannot apply must not stop the others
                error, status = f"{type(exc).__name__}: {exc}", "failed"
                log.exception("callback %s failed", row["key"])
            if status == "failed":
                self.stats["failed"] += 1
            results.append({"rid": row["id"], "status": status, "attempts": row["attempts"] + 1, "error": error})
        return results

    # ------------------------------------------------------------------ dispatch

    def _handle(self, key: str, msg: dict[str, Any]) -> None:
        if msg.get("MsgType") != "event":
            log.info("ignoring %s callback %s", msg.get("MsgType"), key)
            return
        event = msg.get("Event")
        if event == "change_external_contact":
            self._contact(key, msg)
        elif event == "change_external_chat":
            self._chat(key, msg)
        elif event == "kf_msg_or_event":
            self._kf_sync(str(msg.get("OpenKfId", "")), str(msg.get("Token", "")))
        else:
            log.info("ignoring event %s (%s)", event, key)

    def _contact(self, key: str, msg: dict[str, Any]) -> None:
        change = msg.get("ChangeType")
        cid, userid = str(msg.get("ExternalUserID", "")), str(msg.get("UserID", ""))
        now = self.clock.now()
        if not cid:
            raise ValueError("change_external_contact without ExternalUserID")
        if change in ("add_external_contact", "add_half_external_contact"):
            with self.engine.begin() as conn:
                upsert(conn, WecomContact.__table__, [{
                    "customer_id": cid, "userid": userid, "welcome_code": msg.get("WelcomeCode") or None,
                    "welcome_code_at": as_utc(now) if msg.get("WelcomeCode") else None, "welcome_used": False}])
            profile = self._profile(cid, userid)
            submit(self.deps, key=f"wecom/{key}", customer_id=cid, kind="customer_added", at=now,
                   payload={"name": profile.get("name", ""), "owner": userid, "channel_code": msg.get("State") or None,
                            "tags": profile.get("tags", [])})
        elif change == "edit_external_contact":
            profile = self._profile(cid, userid)
            if "tags" in profile:
                submit(self.deps, key=f"wecom/{key}", customer_id=cid, kind="tags", at=now,
                       payload={"tags": profile["tags"], "by": userid})
        elif change in ("del_external_contact", "del_follow_user"):
            submit(self.deps, key=f"wecom/{key}", customer_id=cid, kind="customer_deleted", at=now,
                   payload={"change": change, "by": userid, "source": msg.get("Source", "")})
        else:
            log.info("change_external_contact %s for %s noted", change, cid)

    def _profile(self, cid: str, userid: str) -> dict[str, Any]:
        """Name and the corp tags this employee gave the contact (empty without API access)."""
        if self.client is None:
            return {}
        data = self.client.get_contact(cid)
        follow = next((f for f in data.get("follow_user", []) if f.get("userid") == userid), {})
        return {"name": data.get("external_contact", {}).get("name", ""),
                "tags": [t["tag_name"] for t in follow.get("tags", []) if int(t.get("type", 1)) == 1]}

    def _chat(self, key: str, msg: dict[str, Any]) -> None:
        if msg.get("ChangeType") != "update" or msg.get("UpdateDetail") != "add_member":
            log.info("change_external_chat %s/%s noted", msg.get("ChangeType"), msg.get("UpdateDetail"))
            return
        members = msg.get("MemChangeList") or []
        members = members if isinstance(members, list) else [members]
        with self.engine.connect() as conn:
            known = set(conn.execute(select(Customer.__table__.c.id)
                                     .where(Customer.__table__.c.id.in_([str(m) for m in members]))).scalars())
        for member in sorted(known):
            submit(self.deps, key=f"wecom/{key}/{member}", customer_id=member, kind="behaviour",
                   at=self.clock.now(), payload={"event": "group_joined", "chat_id": msg.get("ChatId", ""),
                                                 "title": "加入客户群"})

    # ------------------------------------------------------------------ 微信客服

    def _kf_sync(self, open_kfid: str, token: str) -> None:
        if self.client is None:
            log.warning("kf callback for %s ignored: sandbox mode has no WeCom API to sync from", open_kfid)
            return
        name = f"kf_cursor/{open_kfid}"
        with self.engine.connect() as conn:
            cursor = conn.execute(select(WorkerState.__table__.c.value)
                                  .where(WorkerState.__table__.c.name == name)).scalar()
        while True:
            data = self.client.kf_sync_msg(token=token, open_kfid=open_kfid, cursor=cursor)
            welcomes: list[tuple[str, str]] = []
            with self.engine.begin() as conn:
                for m in data.get("msg_list", []):
                    welcome = self._kf_message(conn, m, open_kfid)
                    if welcome:
                        welcomes.append(welcome)
                cursor = str(data.get("next_cursor") or cursor or "")
                upsert(conn, WorkerState.__table__, [{"name": name, "value": cursor}])
            for code, customer_id in welcomes:
                self._kf_welcome(code, customer_id)
            if int(data.get("has_more", 0)) != 1:
                return

    def _kf_message(self, conn: Connection, m: dict[str, Any], open_kfid: str) -> tuple[str, str] | None:
        now = self.clock.now()
        sent = datetime.fromtimestamp(int(m.get("send_time", 0) or 0), tz=now.tzinfo) if m.get("send_time") else now
        at = min(as_utc(sent), as_utc(now))
        origin = int(m.get("origin", 0) or 0)
        cid = str(m.get("external_userid", ""))
        if origin == KF_CUSTOMER and cid:
            self._ensure_customer(conn, cid, open_kfid, at)
            msgtype = m.get("msgtype", "text")
            text = m.get("text", {}).get("content", "") if msgtype == "text" else f"[{msgtype}]"
            new = insert_ignore(conn, InboundEvent.__table__, [{
                "key": f"kf/{m.get('msgid')}", "customer_id": cid, "kind": "message", "received_at": at,
                "status": "pending", "payload": {"text": text, "channel": "kf", "open_kfid": open_kfid}}])
            self.stats["kf_messages"] += new
            return None
        if origin != KF_EVENT:
            return None
        event = m.get("event", {})
        cid = str(event.get("external_userid", cid))
        kind = event.get("event_type")
        if kind == "enter_session" and cid:
            self._ensure_customer(conn, cid, open_kfid, None)
            return (str(event["welcome_code"]), cid) if event.get("welcome_code") else None
        if kind == "msg_send_fail":
            self._send_failed(conn, str(event.get("fail_msgid", "")), int(event.get("fail_type", 0) or 0))
        elif kind == "session_status_change" and cid:
            state = HUMAN_STATES.get(int(event.get("change_type", 0) or 0), 1)
            conn.execute(update(KfSession.__table__).where(KfSession.__table__.c.customer_id == cid)
                         .values(service_state=state))
            conn.execute(update(Customer.__table__).where(Customer.__table__.c.id == cid)
                         .values(bot_paused=state == 3))
        return None

    def _ensure_customer(self, conn: Connection, cid: str, open_kfid: str, at: datetime | None) -> None:
        """A kf customer need not be a contact: create the record (no add triggers) and the session."""
        now = as_utc(self.clock.now())
        insert_ignore(conn, Customer.__table__, [{
            "id": cid, "name": "", "owner": "", "channel_code": "kf", "added_at": now, "stage": "new",
            "attributes": {}, "orders_count": 0, "bot_paused": False}])
        upsert(conn, KfSession.__table__, [{"customer_id": cid, "open_kfid": open_kfid, "last_msg_at": at or now,
                                            "service_state": 1}])

    def _kf_welcome(self, code: str, customer_id: str) -> None:
        key = f"kfwelcome/{code}"
        with self.engine.connect() as conn:
            if conn.execute(select(WecomDelivery.__table__.c.key).where(WecomDelivery.__table__.c.key == key)).first():
                return
        assert self.client is not None
        self.client.kf_send_on_event(code=code, msgid=kf_msgid(key), content=reply_text(self.deps.library.catalog, "kf_welcome"))
        with self.engine.begin() as conn:
            insert_ignore(conn, WecomDelivery.__table__, [{
                "key": key, "customer_id": customer_id, "mode": "kf", "result": "sent", "wecom_id": kf_msgid(key),
                "detail": {}, "at": as_utc(self.clock.now())}])

    def _send_failed(self, conn: Connection, fail_msgid: str, fail_type: int) -> None:
        """kf refused a message we sent (e.g. fail_type 6: over 5 per customer message): a human sends it."""
        delivered = conn.execute(select(WecomDelivery.__table__).where(
            WecomDelivery.__table__.c.wecom_id == fail_msgid)).mappings().first()
        if delivered is None:
            log.warning("msg_send_fail for unknown msgid %s", fail_msgid)
            return
        outbox = conn.execute(select(Outbox.__table__.c.payload).where(Outbox.__table__.c.key == delivered["key"])
                              ).scalar() or {}
        hand_to_employee(conn, self.clock.now(), delivered["customer_id"], key=f"kf-fail/{fail_msgid}",
                         title=f"微信客服消息发送失败（fail_type {fail_type}），请人工发送", content=dict(outbox),
                         note_key=f"kf-fail/{fail_msgid}",
                         summary=f"微信客服消息发送失败（fail_type {fail_type}），已转员工待办")
        conn.execute(update(WecomDelivery.__table__).where(WecomDelivery.__table__.c.key == delivered["key"])
                     .values(result="failed", detail={"fail_type": fail_type}))
