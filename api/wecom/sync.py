"""``sopagent wecom sync``: bring in what a corp already has in WeCom when it connects sopagent.

Follow users (employees with 客户联系), their external contacts (``batch/get_by_user``, 100 employees and 100
contacts a page, by cursor), corp tags and each contact's tags, and the customer groups (``groupchat/list`` +
``groupchat/get``). Contacts become customers without firing ``customer_added`` — they are not new — and with
their WeCom tags (provenance ``wecom:sync``, no tag triggers either); an SOP that wants them opts in with
``on: contact_imported``. Known customers keep their stage and history; an empty name or owner is filled in.

Resumable: each page is written together with the position after it (``WorkerState`` ``wecom_sync``), so a
crash or a rate limit that outlasts the client's retries (45009) loses nothing, and the next run continues where
it stopped. A run after a finished one starts over and writes only what changed (WeCom offers no "changed since").
Calls are paced to ``calls_per_minute`` (default half the corp's 10,000/min per API).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection

from agent.tables import InboundEvent
from api.tables import WeComGroupChat
from api.wecom.client import WeComClient, WeComError
from knowledge.clock import Clock, as_utc
from knowledge.db import insert_ignore, upsert
from knowledge.tables import Customer, CustomerTag
from sop_graphs.effects import Effects
from sop_graphs.loader import Library
from sop_graphs.tables import WorkerState

STATE = "wecom_sync"
USERS_PER_CALL = 100  # batch/get_by_user takes at most 100 userids …
CONTACTS_PER_PAGE = 100  # … and returns at most 100 contacts a page
_C, _S = Customer.__table__.c, WorkerState.__table__.c


@dataclass
class SyncReport:
    follow_users: int = 0
    contacts: int = 0  # contact–employee pairs seen
    new_customers: int = 0
    updated_customers: int = 0
    tags_added: int = 0
    groups: int = 0
    pages: int = 0
    resumed: bool = False
    finished: bool = False
    stopped: str | None = None  # why the run stopped before the end (the next run resumes)
    queued: int = 0  # contact_imported events for SOPs that opted in


@dataclass
class _Position:
    phase: str = "contacts"  # contacts → groups → done
    batch: int = 0  # index of the 100-employee batch
    cursor: str = ""


class Pacer:
    """At most ``per_minute`` calls a minute, evenly spaced (the clock and sleep are injectable)."""

    def __init__(self, per_minute: int, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.gap = 60.0 / per_minute
        self.sleep, self.monotonic = sleep, monotonic
        self.next = 0.0

    def wait(self) -> None:
        now = self.monotonic()
        if now < self.next:
            self.sleep(self.next - now)
            now = self.next
        self.next = now + self.gap


class ContactSync:
    def __init__(self, client: WeComClient, engine: Engine, library: Library, clock: Clock, *,
                 calls_per_minute: int = 5000, pacer: Pacer | None = None) -> None:
        self.client, self.engine, self.library, self.clock = client, engine, library, clock
        self.pacer = pacer or Pacer(calls_per_minute)
        self.opted_in = any(t.on == "contact_imported" for s in library.sops.values() if s.enabled
                            for t in s.triggers)

    def _call(self, fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        self.pacer.wait()
        return fn(*args, **kwargs)

    # ------------------------------------------------------------------ position

    def _load(self) -> _Position | None:
        with self.engine.connect() as conn:
            raw = conn.execute(select(_S.value).where(_S.name == STATE)).scalar()
        return _Position(**json.loads(raw)) if raw else None

    @staticmethod
    def _save(conn: Connection, position: _Position) -> None:
        upsert(conn, WorkerState.__table__, [{"name": STATE, "value": json.dumps(position.__dict__)}])

    # ------------------------------------------------------------------ run

    def run(self, *, groups: bool = True, restart: bool = False) -> SyncReport:
        report = SyncReport()
        position = None if restart else self._load()
        if position is None or position.phase == "done":
            position = _Position()
        else:
            report.resumed = True
        try:
            tag_names = self._call(self.client.corp_tag_names)
            users = sorted(self._call(self.client.follow_users))
            report.follow_users = len(users)
            if position.phase == "contacts":
                self._contacts(users, tag_names, position, report)
                position = _Position(phase="groups" if groups else "done")
                with self.engine.begin() as conn:
                    self._save(conn, position)
            if position.phase == "groups":
                self._groups(position, report)
                with self.engine.begin() as conn:
                    self._save(conn, _Position(phase="done"))
            report.finished = True
        except WeComError as exc:  # the client already retried busy/rate-limited calls with back-off
            report.stopped = f"{exc} — run `sopagent wecom sync` again to resume"
        return report

    def _contacts(self, users: list[str], tag_names: dict[str, str], position: _Position,
                  report: SyncReport) -> None:
        batches = [users[i:i + USERS_PER_CALL] for i in range(0, len(users), USERS_PER_CALL)]
        while position.batch < len(batches):
            page = self._call(self.client.contacts_by_user, batches[position.batch], cursor=position.cursor,
                              limit=CONTACTS_PER_PAGE)
            cursor = str(page.get("next_cursor") or "")
            with self.engine.begin() as conn:
                self._write_contacts(conn, page.get("external_contact_list") or [], tag_names, report)
                if cursor:
                    position.cursor = cursor
                else:
                    position.batch, position.cursor = position.batch + 1, ""
                self._save(conn, position)
            report.pages += 1

    def _write_contacts(self, conn: Connection, items: list[dict[str, Any]], tag_names: dict[str, str],
                        report: SyncReport) -> None:
        now = as_utc(self.clock.now())
        ids = [str(i.get("external_contact", {}).get("external_userid", "")) for i in items]
        existing = {r["id"]: r for r in conn.execute(select(_C.id, _C.name, _C.owner).where(_C.id.in_(ids)))
                    .mappings()}
        effects = Effects()
        for item, cid in zip(items, ids, strict=True):
            if not cid:
                continue
            contact, follow = item.get("external_contact") or {}, item.get("follow_info") or {}
            name, owner = str(contact.get("name") or ""), str(follow.get("userid") or "")
            report.contacts += 1
            row = existing.get(cid)
            if row is None:
                added = datetime.fromtimestamp(int(follow.get("createtime") or now.timestamp()), tz=UTC)
                conn.execute(Customer.__table__.insert().values(
                    id=cid, name=name, owner=owner, channel_code=follow.get("state") or None, added_at=added,
                    stage="active", attributes={"imported": "wecom"}))
                existing[cid] = {"id": cid, "name": name, "owner": owner}
                effects.note(customer_id=cid, at=now, kind="imported", key=f"imported/{cid}",
                             summary=f"从企业微信导入（跟进人 {owner or '-'}，{added:%Y-%m-%d} 添加）")
                report.new_customers += 1
                if self.opted_in:
                    report.queued += insert_ignore(conn, InboundEvent.__table__, [{
                        "key": f"wecom-sync/{cid}", "customer_id": cid, "kind": "contact_imported",
                        "payload": {"owner": owner, "channel_code": follow.get("state") or ""},
                        "received_at": now, "status": "pending"}])
            elif (name and not row["name"]) or (owner and not row["owner"]):
                conn.execute(update(Customer.__table__).where(_C.id == cid).values(
                    name=row["name"] or name, owner=row["owner"] or owner))
                report.updated_customers += 1
            tags = [tag_names[t] for t in follow.get("tag_id") or [] if t in tag_names]
            if tags:
                report.tags_added += insert_ignore(conn, CustomerTag.__table__, [
                    {"customer_id": cid, "tag": tag, "source": "wecom:sync", "created_at": now} for tag in tags])
        effects.flush(conn)

    def _groups(self, position: _Position, report: SyncReport) -> None:
        while True:
            page = self._call(self.client.group_chats, cursor=position.cursor)
            chats = [str(c["chat_id"]) for c in page.get("group_chat_list") or []]
            details = [self._call(self.client.group_chat, chat_id).get("group_chat") or {} for chat_id in chats]
            cursor = str(page.get("next_cursor") or "")
            now = as_utc(self.clock.now())
            with self.engine.begin() as conn:
                upsert(conn, WeComGroupChat.__table__, [{
                    "chat_id": g.get("chat_id") or chat_id, "name": g.get("name") or "", "owner": g.get("owner") or "",
                    "created_at": datetime.fromtimestamp(int(g["create_time"]), tz=UTC) if g.get("create_time") else None,
                    "member_count": len(g.get("member_list") or []),
                    "external_members": sorted(str(m["userid"]) for m in g.get("member_list") or []
                                               if int(m.get("type", 1)) == 2),
                    "synced_at": now} for chat_id, g in zip(chats, details, strict=True)])
                position.cursor = cursor
                self._save(conn, position)
            report.groups += len(chats)
            report.pages += 1
            if not cursor:
                return
