"""The one WeCom API client: every outbound WeCom call goes through its httpx client.

Access tokens are cached per secret and refreshed single-flight; 40014/42001 refetch the token and
retry once; -1 (busy) and 45009 (rate limit) and transport errors back off and retry (3 attempts).
The transport is injectable (tests, the fake server) and ``SOPAGENT_WECOM_API_BASE`` routes every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from knowledge.settings import Settings

TOKEN_INVALID = {40014, 42001}
RETRYABLE = {-1, 45009}
WELCOME_ALREADY_SENT = 41051
WELCOME_BUSY = 41096
SESSION_STATE_INVALID = 95018
SecretName = Literal["app", "contact", "kf"]


class WeComError(RuntimeError):
    """A WeCom API call that returned a non-zero errcode (after the retries that apply)."""

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"{path}: errcode {errcode} ({errmsg})")
        self.path = path
        self.errcode = errcode
        self.errmsg = errmsg


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, WeComError) and exc.errcode in RETRYABLE)


class WeComClient:
    """Typed calls to the WeCom server API used by the channel and the callback processor."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.http = httpx.Client(base_url=settings.wecom_api_base.rstrip("/"), transport=transport,
                                 timeout=settings.wecom_timeout_seconds)
        self._sleep = sleep
        self._monotonic = monotonic
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.token_fetches = 0

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ tokens

    def _secret(self, name: SecretName) -> str:
        s = self.settings
        secret = {"app": s.wecom_secret, "contact": s.wecom_contact_secret or s.wecom_secret,
                  "kf": s.wecom_kf_secret or s.wecom_secret}[name]
        if secret is None or not s.wecom_corp_id:
            raise WeComError("gettoken", 41004, "SOPAGENT_WECOM_CORP_ID / SOPAGENT_WECOM_SECRET are not set")
        return secret.get_secret_value()

    def token(self, name: SecretName = "app", *, stale: str | None = None) -> str:
        """A valid access token for ``name``; ``stale`` is a token the server refused (forces a refetch)."""
        secret = self._secret(name)
        with self._guard:
            lock = self._locks.setdefault(secret, threading.Lock())
        with lock:  # single flight: concurrent callers wait for one fetch
            cached = self._tokens.get(secret)
            if cached and cached[0] != stale and cached[1] > self._monotonic():
                return cached[0]
            data = self._request("GET", "/cgi-bin/gettoken",
                                 params={"corpid": self.settings.wecom_corp_id, "corpsecret": secret})
            self.token_fetches += 1
            expires = float(data.get("expires_in", 7200))
            self._tokens[secret] = (data["access_token"], self._monotonic() + max(expires - 300, expires / 2))
            return data["access_token"]

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 json: dict[str, Any] | None = None) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            response = self.http.request(method, path, params=params, json=json)
            response.raise_for_status()
            data = response.json()
            if not isinstance(data, dict):
                raise WeComError(path, -2, "response is not a JSON object")
            code = int(data.get("errcode", 0) or 0)
            if code != 0:
                raise WeComError(path, code, str(data.get("errmsg", "")))
            return data

        retrying = Retrying(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.2, max=2),
                            retry=retry_if_exception(_retryable), reraise=True, sleep=self._sleep)
        return retrying(once)

    def call(self, path: str, body: dict[str, Any] | None = None, *, secret: SecretName = "app",
             method: str = "POST", params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``path`` with a token; refetch the token and retry once if WeCom says it is invalid."""
        token = self.token(secret)
        try:
            return self._request(method, path, params={"access_token": token, **(params or {})}, json=body)
        except WeComError as exc:
            if exc.errcode not in TOKEN_INVALID:
                raise
        token = self.token(secret, stale=token)
        return self._request(method, path, params={"access_token": token, **(params or {})}, json=body)

    # ------------------------------------------------------------------ 微信客服

    def kf_sync_msg(self, *, token: str, open_kfid: str, cursor: str | None, limit: int = 1000) -> dict[str, Any]:
        body = {"token": token, "open_kfid": open_kfid, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self.call("/cgi-bin/kf/sync_msg", body, secret="kf")

    def kf_send_text(self, *, touser: str, open_kfid: str, msgid: str, content: str) -> dict[str, Any]:
        return self.call("/cgi-bin/kf/send_msg", {"touser": touser, "open_kfid": open_kfid, "msgid": msgid,
                                                  "msgtype": "text", "text": {"content": content}}, secret="kf")

    def kf_send_on_event(self, *, code: str, msgid: str, content: str) -> dict[str, Any]:
        return self.call("/cgi-bin/kf/send_msg_on_event", {"code": code, "msgid": msgid, "msgtype": "text",
                                                           "text": {"content": content}}, secret="kf")

    def kf_trans(self, *, open_kfid: str, external_userid: str, service_state: int,
                 servicer_userid: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"open_kfid": open_kfid, "external_userid": external_userid,
                                "service_state": service_state}
        if servicer_userid:
            body["servicer_userid"] = servicer_userid
        return self.call("/cgi-bin/kf/service_state/trans", body, secret="kf")

    # ------------------------------------------------------------------ 客户联系

    def get_contact(self, external_userid: str) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/get", method="GET", secret="contact",
                         params={"external_userid": external_userid})

    def send_welcome(self, *, welcome_code: str, content: str) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/send_welcome_msg",
                         {"welcome_code": welcome_code, "text": {"content": content}}, secret="contact")

    def add_msg_template(self, *, sender: str, content: str, external_userids: list[str] | None = None,
                         chat_type: Literal["single", "group"] = "single") -> dict[str, Any]:
        body: dict[str, Any] = {"chat_type": chat_type, "sender": sender, "text": {"content": content}}
        if external_userids is not None:
            body["external_userid"] = external_userids
        return self.call("/cgi-bin/externalcontact/add_msg_template", body, secret="contact")

    def groupmsg_result(self, *, msgid: str, userid: str) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/get_groupmsg_send_result",
                         {"msgid": msgid, "userid": userid, "limit": 1000}, secret="contact")

    def remind_groupmsg(self, msgid: str) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/remind_groupmsg_send", {"msgid": msgid}, secret="contact")

    def cancel_groupmsg(self, msgid: str) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/cancel_groupmsg_send", {"msgid": msgid}, secret="contact")

    def add_moment_task(self, *, content: str, senders: list[str]) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/add_moment_task",
                         {"text": {"content": content}, "visible_range": {"sender_list": {"user_list": senders}}},
                         secret="contact")

    def follow_users(self) -> list[str]:
        """The employees with the customer-contact feature (客户联系) enabled."""
        data = self.call("/cgi-bin/externalcontact/get_follow_user_list", method="GET", secret="contact")
        return [str(u) for u in data.get("follow_user", [])]

    def contacts_by_user(self, userids: list[str], *, cursor: str = "", limit: int = 100) -> dict[str, Any]:
        """One page of the external contacts of up to 100 employees (``external_contact_list``, ``next_cursor``)."""
        return self.call("/cgi-bin/externalcontact/batch/get_by_user",
                         {"userid_list": userids, "cursor": cursor, "limit": limit}, secret="contact")

    def group_chats(self, *, cursor: str = "", limit: int = 1000) -> dict[str, Any]:
        """One page of the corp's customer groups (``group_chat_list``, ``next_cursor``)."""
        return self.call("/cgi-bin/externalcontact/groupchat/list",
                         {"status_filter": 0, "cursor": cursor, "limit": limit}, secret="contact")

    def group_chat(self, chat_id: str) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1},
                         secret="contact")

    def corp_tag_names(self) -> dict[str, str]:
        """Corp tag id → tag name (the ids contacts carry)."""
        return {tag_id: name for name, tag_id in self.corp_tags().items()}

    def corp_tags(self) -> dict[str, str]:
        """Corp tag name → tag id."""
        data = self.call("/cgi-bin/externalcontact/get_corp_tag_list", {}, secret="contact")
        return {tag["name"]: tag["id"] for group in data.get("tag_group", []) for tag in group.get("tag", [])}

    def add_corp_tags(self, names: list[str], group_name: str = "sopagent") -> dict[str, str]:
        data = self.call("/cgi-bin/externalcontact/add_corp_tag",
                         {"group_name": group_name, "tag": [{"name": n} for n in names]}, secret="contact")
        return {tag["name"]: tag["id"] for tag in data.get("tag_group", {}).get("tag", [])}

    def mark_tag(self, *, userid: str, external_userid: str, add: list[str], remove: list[str]) -> dict[str, Any]:
        return self.call("/cgi-bin/externalcontact/mark_tag", {"userid": userid, "external_userid": external_userid,
                                                               "add_tag": add, "remove_tag": remove},
                         secret="contact")

    # ------------------------------------------------------------------ employees

    def app_markdown(self, *, touser: str, content: str) -> dict[str, Any]:
        """An app message of type markdown (content at most 2048 bytes of UTF-8)."""
        return self.call("/cgi-bin/message/send", {"touser": touser, "msgtype": "markdown",
                                                   "agentid": self.settings.wecom_agent_id or 0,
                                                   "markdown": {"content": content}})

    def app_message(self, *, touser: str, content: str) -> dict[str, Any]:
        return self.call("/cgi-bin/message/send", {"touser": touser, "msgtype": "text",
                                                   "agentid": self.settings.wecom_agent_id or 0,
                                                   "text": {"content": content}})
