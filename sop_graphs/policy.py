"""Contact policy (anti-harassment), applied in one place to every marketing send.

Daily cap, minimum interval, quiet hours, unsubscribe and open complaints. A push that may not go
now is deferred to the next allowed slot (never silently dropped) and the reason is recorded;
an unsubscribed or churned customer's marketing is cancelled, visibly. Service messages — replies
to the customer's own message, tasks, tag writes — pass untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from knowledge.clock import ShopTime, as_utc
from knowledge.settings import Settings

# "退订" of messages, not of an order or a product ("退订那个孕妇霜 帮我把单取消了": cancel the order)
_UNSUB_WORD = r"退订(?!单|金|了?(那|这|的)|了?[一两]?[个款件瓶盒套]|订单)"
_MESSAGES = r"(消息|信息|讯息|广告|推送|推广|活动|营销|短信|通知|这些|这种|这类|那些|文章|上新|优惠|直播)"
_KIND = r"(这些|那些|这种|那种|这类|任何|什么|优惠|活动|营销|促销|直播|上新|我)?"
_SEND = r"(发|推|推送|推播|发送|群发|传|通知|打扰|骚扰|联系|轰炸)"
_END = r"(了|啦|吧|哈|呀|哦|喔|嘛|哈)*([!.。~,，;；]|\s|$)"  # "不用再联系我了 东西用着不合适": a clause ends
# Precise on purpose: "不要发顺丰", "防晒能屏蔽紫外线吗" and an order number containing "TD" are not opt-outs.
UNSUBSCRIBE = re.compile("|".join((
    _UNSUB_WORD, r"取消(订阅|关注|推送)", r"^(回复)?\s*t\s*d\s*[!.。~]*$", r"回复\s*td\b", r"\btd\s*退订",
    r"(别|不要|不用|不必|无需|不需要|请勿|勿|停止|请停止|别再|不想再?)(再|在)?(给我)?" + _SEND + r"(我)?" + _END,
    r"(别|不要|不用|无需|不需要|请勿|勿|停止|别再|不想)(再|在)?(给我|每天|天天|老是)?" + _SEND + r"(我)?(了)?" + _KIND
    + _MESSAGES,
    _MESSAGES + r"[^\s,.!?]{0,3}(不用|不要|别|不想|不需要)(再)?(发|推|看|收)(给)?(我)?",
    r"(别|不要|不用|请勿|勿)(再)?(来)?(打扰|骚扰)", r"(不想|不要|不愿意?)(再)?(收到|接收|看到|看)(你们的?)?.{0,4}" + _MESSAGES,
    r"(天天|每天|老是|一直|总是)(都)?(发|推|轰炸).{0,8}(烦|够了|受不了|停)", r"(烦|够了|受不了).{0,6}(天天|每天|老是|一直|总是)(都)?(发|推)",
    r"(不需要|不用|不要|别)(再)?(这些|这种|你们的?)?(推送|广告|营销消息|营销|群发)",
    r"(把你们?|你们已经被我)?(拉黑|屏蔽)(你们|你了|了你们|了)", r"再(发|推).{0,3}(就)?(拉黑|投诉|举报)",
    r"移出.{0,4}(名单|推送|列表|群发)", r"(关闭|关掉|取消)(消息|营销|活动)?(推送|通知|订阅)", r"^免打扰",
    r"\b(unsubscribe|opt[ -]?out)\b", r"\bstop (sending|messaging|texting)", r"^stop[!. ]*$",
    r"(don'?t|do not) (send|message|text) me", r"no more (\w+ )?(messages|ads|promotions)", r"remove me from")))
# a message about how an invoice or a parcel is sent ("发票发邮箱，不要发短信") is not about marketing
# … nor is muting a group while asking for private messages ("群消息太多我先屏蔽了 有活动私聊我")
_LOGISTICS_TALK = re.compile(r"发票|快递|顺丰|京东|中通|圆通|韵达|申通|邮政|极兔|地址|私发|私聊|链接|群消息|群里|这个群")
# … nor is holding something for now ("暂时别发 等我通知": a shipment, not the marketing)
_HOLD = re.compile(r"暂时|先别|先不要|等我|过几天再|改天再")
_EXPLICIT = re.compile(_UNSUB_WORD + r"|取消订阅|^(回复)?\s*t\s*d\s*[!.。~]*$|unsubscribe")


def opt_out_vetoed(text: str) -> bool:
    """Talk of how a parcel, an invoice or a group's messages are sent, with no explicit 退订: never an opt-out,
    whatever a classifier reads into it. ``text`` must be normalised."""
    return bool(_LOGISTICS_TALK.search(text) or _HOLD.search(text)) and not _EXPLICIT.search(text)


def is_unsubscribe(text: str) -> bool:
    """Whether a customer message asks to stop marketing ("退订", "别发了", "以后不要再推送了", …).

    ``text`` is normalised here too (full-width, traditional, case), so callers may pass raw text.
    """
    from knowledge.text import normalise

    text = normalise(text)
    if opt_out_vetoed(text):
        return False
    return bool(UNSUBSCRIBE.search(text))


@dataclass
class Contact:
    """What the policy needs to know about one customer; updated in memory as a batch is decided."""

    last_marketing_at: datetime | None = None
    last_touch: str | None = None
    day: str | None = None
    day_count: int = 0
    unsubscribed: bool = False
    churned: bool = False
    suppressed_by: str | None = None
    reserved: int = 0  # time-critical marketing (priority > 0) still due today: today's last slots are theirs
    last_inbound_at: datetime | None = None
    kf_window: datetime | None = None
    kf_sent: int = 0


@dataclass(frozen=True)
class Decision:
    verdict: str  # send, defer, cancel
    until: datetime | None = None
    reason: str = ""


class ContactPolicy:
    """Decides send / defer / cancel for one outbound action at ``now``."""

    def __init__(self, settings: Settings, shop: ShopTime) -> None:
        self.cap = settings.daily_marketing_cap
        self.interval = timedelta(hours=settings.min_marketing_interval_hours)
        self.quiet_start: time = settings.quiet_start
        self.quiet_end: time = settings.quiet_end
        self.shop = shop

    def in_quiet_hours(self, instant: datetime) -> bool:
        local = self.shop.local(instant).time()
        if self.quiet_start > self.quiet_end:
            return local >= self.quiet_start or local < self.quiet_end
        return self.quiet_start <= local < self.quiet_end

    def next_allowed(self, instant: datetime) -> datetime:
        """``instant`` itself, or the end of the quiet period it falls in."""
        if not self.in_quiet_hours(instant):
            return instant
        return self.shop.next_time_of_day(instant, self.quiet_end)

    def decide(self, *, marketing: bool, touch: str | None, contact: Contact, now: datetime,
               priority: int = 0) -> Decision:
        """``priority`` > 0: time-critical content (a live reminder, a coupon about to expire) that generic
        content (priority 0) leaves today's remaining slots to when the daily cap would otherwise bind."""
        if not marketing:
            return Decision("send")
        if contact.churned:
            return Decision("cancel", reason="customer deleted us (churned)")
        if contact.unsubscribed:
            return Decision("cancel", reason="customer unsubscribed (退订)")
        if contact.suppressed_by:
            until = self.next_allowed(now + timedelta(days=1))
            return Decision("defer", until, f"open {contact.suppressed_by}: marketing paused")
        if self.in_quiet_hours(now):
            return Decision("defer", self.next_allowed(now), "quiet hours")
        same_touch = touch is not None and touch == contact.last_touch
        if same_touch:
            return Decision("send")
        today = self.shop.local_date(now).isoformat()
        if contact.day == today and contact.day_count >= self.cap:
            # the start of tomorrow's window, so deferred pushes go out before that day's fresh content
            tomorrow = self.shop.at(self.shop.local(now).date() + timedelta(days=1), self.quiet_end)
            return Decision("defer", self.next_allowed(tomorrow), f"daily cap of {self.cap} reached")
        used = contact.day_count if contact.day == today else 0
        if priority == 0 and contact.reserved and self.cap - used <= contact.reserved:
            tomorrow = self.shop.at(self.shop.local(now).date() + timedelta(days=1), self.quiet_end)
            return Decision("defer", self.next_allowed(tomorrow),
                            f"today's last {self.cap - used} slot(s) kept for time-critical content")
        if contact.last_marketing_at is not None and now - as_utc(contact.last_marketing_at) < self.interval:
            until = self.next_allowed(as_utc(contact.last_marketing_at) + self.interval)
            return Decision("defer", until, f"minimum interval of {self.interval} since the last push")
        return Decision("send")

    def record_send(self, contact: Contact, touch: str | None, now: datetime) -> None:
        """Count a marketing send against the customer's caps."""
        if touch is not None and touch == contact.last_touch:
            return
        today = self.shop.local_date(now).isoformat()
        contact.day_count = contact.day_count + 1 if contact.day == today else 1
        contact.day = today
        contact.last_marketing_at = now
        contact.last_touch = touch
