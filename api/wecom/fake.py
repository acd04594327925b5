"""An in-memory fake of the WeCom server API, as an httpx transport (tests, the callback bench, staging).

It speaks the endpoints the client uses, records every call, serves kf messages queued per kf account
with real cursors, and can be told to fail (``fail_next``) to exercise retries and fallbacks.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeWeCom:
    """State of the fake: tokens issued, kf message log, contacts, corp tags, and every call made."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # wall time of each call, parallel to ``calls``
    reveal: Callable[[str], int] | None = None  # kf messages visible to a sync with this callback token
    kf_log: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    corp_tags: dict[str, str] = field(default_factory=dict)
    follow_users: list[str] = field(default_factory=list)
    # batch/get_by_user: {external_contact: {...}, follow_info: {userid, tag_id, createtime, state, remark}}
    external_contacts: list[dict[str, Any]] = field(default_factory=list)
    group_chats: dict[str, dict[str, Any]] = field(default_factory=dict)  # chat_id → groupchat/get's group_chat
    fail_next: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    expire_tokens: bool = False
    tokens_issued: int = 0
    page_size: int = 1000
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_kf_message(self, open_kfid: str, msg: dict[str, Any]) -> None:
        with self._lock:
            self.kf_log[open_kfid].append(msg)

    def sent(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body in self.calls if p == path]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        with self._lock:
            self.calls.append((path, body))
            self.stamps.append(time.time())
            failures = self.fail_next.get(path)
            if failures:
                return httpx.Response(200, json={"errcode": failures.pop(0), "errmsg": "injected"})
            if path == "/cgi-bin/gettoken":
                self.tokens_issued += 1
                return httpx.Response(200, json={"errcode": 0, "access_token": f"tok{self.tokens_issued}",
                                                 "expires_in": 7200})
            token = request.url.params.get("access_token", "")
            if not token.startswith("tok") or (self.expire_tokens and token != f"tok{self.tokens_issued}"):
                return httpx.Response(200, json={"errcode": 42001, "errmsg": "access_token expired"})
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", **self._answer(path, body, request)})

    def _page(self, items: list[Any], body: dict[str, Any], key: str, most: int) -> dict[str, Any]:
        """A page as WeCom hands them out: ``cursor`` in, ``next_cursor`` out ('' on the last page)."""
        start = int(body.get("cursor") or 0)
        size = min(int(body.get("limit") or most), most, self.page_size)
        end = start + size
        return {key: items[start:end], "next_cursor": str(end) if end < len(items) else ""}

    def _answer(self, path: str, body: dict[str, Any], request: httpx.Request) -> dict[str, Any]:
        if path == "/cgi-bin/kf/sync_msg":
            log = self.kf_log[body.get("open_kfid", "")]
            if self.reveal is not None:
                log = log[:self.reveal(str(body.get("token", "")))]
            start = int(body.get("cursor") or 0)
            page = log[start:start + min(int(body.get("limit", 1000)), self.page_size)]
            for message in page:  # a message "arrives" when WeCom first hands it out, unless the test fixed it
                if message.get("send_time") is None:
                    message["send_time"] = int(time.time())
            end = start + len(page)
            return {"next_cursor": str(end), "has_more": int(end < len(log)), "msg_list": page}
        if path == "/cgi-bin/externalcontact/get":
            cid = request.url.params.get("external_userid", "")
            return self.contacts.get(cid, {"external_contact": {"external_userid": cid, "name": ""},
                                           "follow_user": []})
        if path == "/cgi-bin/externalcontact/get_follow_user_list":
            return {"follow_user": list(self.follow_users)}
        if path == "/cgi-bin/externalcontact/batch/get_by_user":
            users = set(body.get("userid_list", []))
            mine = [c for c in self.external_contacts if c["follow_info"]["userid"] in users]
            return self._page(mine, body, "external_contact_list", 100)
        if path == "/cgi-bin/externalcontact/groupchat/list":
            chats = [{"chat_id": chat_id, "status": 0} for chat_id in sorted(self.group_chats)]
            return self._page(chats, body, "group_chat_list", 1000)
        if path == "/cgi-bin/externalcontact/groupchat/get":
            return {"group_chat": self.group_chats[body["chat_id"]]}
        if path == "/cgi-bin/externalcontact/get_corp_tag_list":
            return {"tag_group": [{"group_name": "sopagent", "tag": [{"id": i, "name": n}
                                                                      for n, i in self.corp_tags.items()]}]}
        if path == "/cgi-bin/externalcontact/add_corp_tag":
            created = []
            for tag in body.get("tag", []):
                self.corp_tags.setdefault(tag["name"], f"et{len(self.corp_tags) + 1}")
                created.append({"id": self.corp_tags[tag["name"]], "name": tag["name"]})
            return {"tag_group": {"group_name": body.get("group_name"), "tag": created}}
        if path == "/cgi-bin/externalcontact/add_msg_template":
            return {"msgid": f"mass{len(self.sent(path))}", "fail_list": []}
        if path == "/cgi-bin/externalcontact/get_groupmsg_send_result":
            return {"send_list": []}
        if path == "/cgi-bin/externalcontact/add_moment_task":
            return {"jobid": f"job{len(self.sent(path))}"}
        if path == "/cgi-bin/kf/send_msg":
            return {"msgid": body.get("msgid", "")}
        return {}
