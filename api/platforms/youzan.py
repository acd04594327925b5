"""有赞 (Youzan) push messages (有赞云 消息推送) as the shop's order events.

The format, as 有赞云's documentation gives it (these are the pages this module follows):

* The push body, per message type — https://doc.youzanyun.com/detail/MSG/301 (trade_TradePaid),
  /detail/MSG/302 (trade_TradeBuyerPay), /detail/MSG/300 (trade_TradeCreate), /detail/MSG/199 (trade_TradeSuccess),
  /detail/MSG/200 (trade_TradeClose), /detail/MSG/201 (trade_refund_RefundSuccess): JSON with ``client_id``, ``id``
  (业务消息的标识: the order number for trade messages), ``kdt_id``, ``kdt_name``, ``mode``, ``msg`` (the message,
  "经过UrlEncode(UTF-8)编码,需要解码"), ``msg_id`` (消息唯一标示), ``root_kdt_id``, ``sendCount`` (重发的次数: at most
  four redeliveries, after 5 s, 5 min 20 s, 21 min 20 s and 2 h), ``sign`` ("MD5(client_id+msg+client_secret)。
  不建议使用此字段，可以用请求头中的Event-Sign进行防伪验证"), ``status``, ``test`` (a test message), ``type`` and
  ``version`` (orders messages of one type, high overrides low; pushes of different types arrive in no order).
* The signature headers — https://doc.youzanyun.com/resource/develop-guide/41355/41536 (消息推送接入):
  ``Event-Sign: MD5(client_id + <raw request body> + client_secret)``, beside ``Client-Id`` and ``Event-Type``.
  Both signatures are documented; the header is checked when present, else the ``sign`` field.
* The trade inside ``msg`` of trade_TradeBuyerPay / trade_TradePaid (and trade_TradeCreate) has the structure of
  the youzan.trade.get 4.0.0 answer (订单详情): ``full_order_info`` {order_info, buyer_info, pay_info, address_info,
  orders}, ``delivery_order`` [{dists: [{express_info: {express_id, express_no}}]}], ``refund_order``,
  ``order_promotion``. ``buyer_info.outer_user_id`` is "微信H5和微信小程序…的订单会返回微信weixin_openid，三方App…的订单会
  返回open_user_id"; ``yz_open_id`` is the buyer's id at 有赞. Status messages carry only ``{tid, update_time}``
  (trade_TradePartlySellerShip adds ``oids``, trade_TradeClose ``close_type``); the refund message carries
  ``{tid, oids, refunded_fee, refund_id, refund_reason, refund_type, update_time}``. Times are Beijing wall-clock
  strings (``2026-12-01 10:20:30``), money is 元 as a decimal string.
* 个人敏感信息加密 — https://doc.youzanyun.com/resource/doc/3020: ``buyer_phone``, ``fans_nickname``,
  ``receiver_name``, ``receiver_tel`` and ``delivery_address`` arrive as shop-keyed ciphertext (``$…$1$``) that only
  有赞's decrypt API opens. Ciphertext is never stored, never matched and never shown.

(These pages were read through stored copies: the YouZanYun.Msg C# classes generated from the MSG pages, each
citing its page; youzanyun-push-demo's Event-Sign check citing the 消息推送接入 guide; youzan.trade.get typings;
cesing/youzanyun-doc's encryption guide; the Nldou Youzan PHP SDK's message field maps for the status messages.)

How a push becomes an order event (:func:`apply_push`), through the same :func:`api.order_events.apply_event` the
signed generic webhook uses — so each event reaches a customer's SOPs once, keyed ``order/<tid>/<event>``:

=============================================================  ==========================================
有赞 ``type``                                                    our event
=============================================================  ==========================================
trade_TradeBuyerPay, trade_TradePaid                            paid (the push carries the whole trade)
trade_TradePartlySellerShip, trade_TradeSellerShip              shipped (the first parcel is the news)
trade_TradeSuccess (买家确认收货 / 自动确认)                       delivered (and shipped, if that push was missed)
trade_refund_RefundSuccess                                      refunded when the whole amount is refunded;
                                                                a partial refund is acknowledged and ignored
trade_TradeClose                                                refunded for an order seen paid (a paid 有赞
                                                                order closes only by full refund); cancelled for
                                                                one stored unpaid; ignored for one never seen
anything else (trade_TradeCreate, memo, item, member, coupon…)  acknowledged and ignored
=============================================================  ==========================================

The event id is ``youzan/<type>/<id>/<version>``: a redelivery repeats the message with a higher ``sendCount`` and
everything else the same, so it is recognised; two refunds of one order differ in ``version``.

The buyer becomes our customer only by an identity 有赞 gives, never by anything a message or a model says:
(1) the customer the stored order already belongs to (an order import, or an earlier push, linked the order
number to them); else (2) a customer whose id *is* one of the buyer's 有赞 identities — ``outer_user_id``,
``yz_open_id``, ``fans_id`` (Customer.id is the only identity column there is); else the order is stored under
``youzan:<yz_open_id…>`` and no event is queued (the rule of the generic webhook for unknown buyers). Status pushes
name only the order, so they need the order stored first; one that arrives before the paid push is refused with
:class:`OrderNotYetKnown` and 有赞's redelivery brings it back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from api.order_events import (
    IMPLIED,
    Applied,
    EventType,
    OrderEventIn,
    OrderIn,
    ShipmentIn,
    SignatureError,
    apply_event,
)
from knowledge.tables import Customer, ShopOrder

YOUZAN_TZ = ZoneInfo("Asia/Shanghai")  # 有赞's times are Beijing wall clock, whatever the shop's own timezone
SIGN_HEADER = "Event-Sign"
TYPE_HEADER = "Event-Type"
CLIENT_HEADER = "Client-Id"
DETAIL_TYPES: dict[str, EventType] = {"trade_TradeBuyerPay": "paid", "trade_TradePaid": "paid"}
CHANGE_TYPES: dict[str, EventType] = {
    "trade_TradePartlySellerShip": "shipped", "trade_TradeSellerShip": "shipped", "trade_TradeSuccess": "delivered",
    "trade_TradeClose": "cancelled",  # refined by what we know of the order: see _close_event
    "trade_refund_RefundSuccess": "refunded"}
MAPPED: dict[str, EventType] = DETAIL_TYPES | CHANGE_TYPES
PLACEHOLDER = "youzan:"  # customer id of an order whose buyer matches no customer; WeCom ids have no colon
_CIPHER = re.compile(r"^\$[^$]+\$\d+\$$")  # 有赞's ciphertext of a personal field: $<base64>$<key version>$
_MOBILE = re.compile(r"^1\d{10}$")
_M = TypeVar("_M", bound=BaseModel)


class OrderNotYetKnown(LookupError):
    """A status push for an order not stored yet (its paid push may still be on the way: pushes are unordered)."""


class MalformedPush(ValueError):
    """The ``msg`` of a push is not URL-encoded UTF-8 JSON of the documented shape."""


def _blank_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _youzan_time(value: Any) -> Any:
    """``"2026-12-01 10:20:30"`` (Beijing) → an aware datetime; blank → None."""
    value = _blank_none(value)
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=YOUZAN_TZ)
        except ValueError as exc:
            raise ValueError(f"not a 有赞 time 'YYYY-MM-DD HH:MM:SS': {value[:40]!r}") from exc
    return value


YouzanTime = Annotated[datetime | None, BeforeValidator(_youzan_time)]
Yuan = Annotated[Decimal | None, BeforeValidator(_blank_none), Field(default=None, ge=0, le=10_000_000)]
Text = Annotated[str, BeforeValidator(lambda v: "" if v is None else v), Field(default="", max_length=500)]


def _plain(value: str | None) -> str:
    """``value`` unless it is blank or 有赞 ciphertext (which only 有赞's decrypt API opens)."""
    return "" if not value or _CIPHER.match(value.strip()) else value.strip()


class _Youzan(BaseModel):
    """有赞 adds fields over time and writes ids as numbers or strings: unknown fields are ignored, numbers kept as
    text where we keep ids."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)


class YouzanPush(_Youzan):
    """The body 有赞 POSTs (the envelope; the message itself is the URL-encoded ``msg``)."""

    client_id: str = Field(min_length=1, max_length=64, description="the 有赞云 app's client_id")
    id: str = Field(default="", max_length=64, description="业务消息的标识: the order number (tid) of a trade message")
    kdt_id: int | None = Field(default=None, description="店铺 id")
    kdt_name: Text = Field(description="店铺名称")
    msg: str = Field(default="", max_length=1_000_000, description="the message: URL-encoded (UTF-8) JSON")
    msg_id: str | None = Field(default=None, max_length=64, description="消息唯一标示")
    send_count: int = Field(default=0, ge=0, alias="sendCount", description="重发的次数: grows on redelivery")
    sign: str | None = Field(default=None, max_length=64, description="MD5(client_id + msg + client_secret)")
    status: str | None = Field(default=None, max_length=64, description="the order status after the change")
    test: bool = Field(default=False, description="a test message: acknowledged, nothing done")
    type: str = Field(min_length=1, max_length=64, description="消息业务类型, e.g. trade_TradePaid")
    version: int | None = Field(default=None, description="消息版本号: the same on every redelivery of a message")


class OrderInfo(_Youzan):
    tid: str = Field(min_length=1, max_length=64)
    status: str = ""
    created: YouzanTime = None
    pay_time: YouzanTime = None
    update_time: YouzanTime = None


class BuyerInfo(_Youzan):
    """The buyer as 有赞 identifies them; ``buyer_phone`` and ``fans_nickname`` are ciphertext nowadays."""

    buyer_id: str | None = Field(default=None, max_length=64)
    buyer_phone: str | None = Field(default=None, max_length=200)
    fans_id: str | None = Field(default=None, max_length=64)
    fans_type: int | None = None
    fans_nickname: str | None = Field(default=None, max_length=200)
    outer_user_id: str | None = Field(default=None, max_length=128, description="WeChat openid, or the brand app's "
                                      "open_user_id")
    yz_open_id: str | None = Field(default=None, max_length=128, description="the buyer's id at 有赞")

    def identities(self) -> list[str]:
        """The buyer's 有赞 identities a customer id may be, most specific first (ciphertext and zeros left out)."""
        values = [_plain(v) for v in (self.outer_user_id, self.yz_open_id, self.fans_id)]
        return list(dict.fromkeys(v for v in values if v and v != "0"))

    def placeholder(self) -> str:
        """The customer id an order of an unmatched buyer is stored under (never a customer: no event)."""
        known = [_plain(v) for v in (self.yz_open_id, self.outer_user_id, self.fans_id, self.buyer_id)]
        return (PLACEHOLDER + next((v for v in known if v and v != "0"), "unknown"))[:128]


class PayInfo(_Youzan):
    payment: Yuan = Field(description="最终支付价格 (元)")
    total_fee: Yuan = Field(description="优惠前商品总价 (元)")
    post_fee: Yuan = Field(description="邮费 (元)")


class AddressInfo(_Youzan):
    receiver_name: Text
    receiver_tel: Text
    delivery_province: Text
    delivery_city: Text
    delivery_district: Text
    delivery_address: Text

    def as_text(self) -> str:
        """``省市区详细地址 收货人 138****5678`` from what is plaintext (ciphertext is left out, the phone masked)."""
        region = "".join(_plain(p) for p in (self.delivery_province, self.delivery_city, self.delivery_district,
                                             self.delivery_address))
        tel = _plain(self.receiver_tel)
        tel = f"{tel[:3]}****{tel[7:]}" if _MOBILE.match(tel) else tel
        return " ".join(p for p in (region, _plain(self.receiver_name), tel) if p)[:500]


class TradeItem(_Youzan):
    oid: str = Field(default="", max_length=64)
    title: Text
    num: int = Field(default=1, ge=0)
    price: Yuan = Field(description="单商品原价 (元)")
    payment: Yuan = Field(description="商品最终均摊价 (元)")
    outer_sku_id: str = Field(default="", max_length=128, description="商家编码: the shop's SKU")
    outer_item_id: str = Field(default="", max_length=128)
    item_id: str = Field(default="", max_length=64)
    sku_properties_name: Text

    def as_item(self) -> dict[str, Any]:
        """In the shape the order importer writes (sku, name, qty, price)."""
        item: dict[str, Any] = {"sku": self.outer_sku_id or self.outer_item_id or self.item_id, "name": self.title,
                                "qty": self.num, "price": float(self.price) if self.price is not None else None}
        return item | ({"spec": self.sku_properties_name} if self.sku_properties_name else {})


class FullOrderInfo(_Youzan):
    order_info: OrderInfo
    buyer_info: BuyerInfo = Field(default_factory=BuyerInfo)
    pay_info: PayInfo = Field(default_factory=PayInfo)
    address_info: AddressInfo = Field(default_factory=AddressInfo)
    orders: list[TradeItem] = Field(default_factory=list, max_length=200)


class ExpressInfo(_Youzan):
    express_id: str | None = Field(default=None, max_length=32, description="有赞's carrier code")
    express_no: str = Field(default="", max_length=64, description="the tracking number")


class DeliveryDist(_Youzan):
    dist_id: str = Field(default="", max_length=64)
    express_info: ExpressInfo | None = None


class DeliveryOrder(_Youzan):
    express_state: int | None = Field(default=None, description="0 待发货, 1 已发货")
    dists: list[DeliveryDist] = Field(default_factory=list, max_length=200)


class TradeDetail(_Youzan):
    """``msg`` of trade_TradeBuyerPay / trade_TradePaid: the trade as youzan.trade.get 4.0.0 returns it."""

    full_order_info: FullOrderInfo
    delivery_order: list[DeliveryOrder] = Field(default_factory=list, max_length=200)

    def parcel(self) -> ShipmentIn | None:
        """The last parcel with a tracking number, if the trade has one. 有赞 gives a numeric carrier code and no
        name, and no code list is documented, so the carrier is left blank rather than guessed."""
        numbers = [d.express_info.express_no for o in self.delivery_order for d in o.dists
                   if d.express_info is not None and d.express_info.express_no]
        return ShipmentIn(tracking_no=numbers[-1]) if numbers else None


class TradeChange(_Youzan):
    """``msg`` of the status and refund messages: which order changed, and when."""

    tid: str = Field(min_length=1, max_length=64)
    update_time: YouzanTime = None
    oids: str = Field(default="", max_length=2000, description="交易明细 ids, comma-separated")
    close_type: int | None = Field(default=None, description="trade_TradeClose: 1 过期, 2 标记退款, 4 买家取消, …")
    refunded_fee: Yuan = Field(description="trade_refund_RefundSuccess: 退款金额 (元)")
    refund_id: str = Field(default="", max_length=64)


@dataclass(frozen=True)
class StoredOrder:
    order_no: str
    customer_id: str
    status: str
    amount: float
    items: list[dict[str, Any]]
    address: str
    created_at: datetime

    def as_order(self) -> OrderIn:
        return OrderIn(order_no=self.order_no, customer_id=self.customer_id, amount=self.amount, items=self.items,
                       address=self.address, created_at=self.created_at)


@dataclass(frozen=True)
class Ignored:
    """A push acknowledged without doing anything, and why."""

    reason: str


@dataclass
class Outcome:
    """What a push did: ``ignored`` says why nothing was done; otherwise ``applied`` is the order event's result."""

    event_id: str | None = None
    ignored: str | None = None
    applied: Applied | None = None


def md5_sign(client_id: str, payload: bytes, client_secret: str) -> str:
    """Hex MD5 of ``client_id + payload + client_secret``: 有赞's signature (its choice of hash, not ours)."""
    return hashlib.md5(client_id.encode() + payload + client_secret.encode()).hexdigest()


def parse_push(body: bytes) -> YouzanPush:
    """The push envelope; raises pydantic's ValidationError for anything else."""
    return YouzanPush.model_validate_json(body)


def verify(push: YouzanPush, body: bytes, *, client_id: str, client_secret: str, event_sign: str | None,
           header_client_id: str | None = None) -> None:
    """Raise :class:`SignatureError` unless the push is for this app and signed with its secret: the
    ``Event-Sign`` header over the raw body when present, else the body's ``sign`` over ``msg``."""
    if header_client_id is not None and header_client_id.strip() != client_id:
        raise SignatureError(f"{CLIENT_HEADER} header is not this app's client_id (SOPAGENT_YOUZAN_CLIENT_ID)")
    if push.client_id != client_id:
        raise SignatureError("client_id of the push is not this app's (SOPAGENT_YOUZAN_CLIENT_ID)")
    if event_sign and event_sign.strip():
        expected, given = md5_sign(client_id, body, client_secret), event_sign
        what = f"{SIGN_HEADER} header does not match the body (MD5 of client_id + body + client_secret)"
    elif push.sign:
        expected, given = md5_sign(client_id, push.msg.encode(), client_secret), push.sign
        what = "sign does not match msg (MD5 of client_id + msg + client_secret)"
    else:
        raise SignatureError(f"unsigned: neither an {SIGN_HEADER} header nor a sign field")
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise SignatureError(what)


def event_id(push: YouzanPush) -> str:
    """What stays the same when 有赞 redelivers a message (``sendCount`` grows, nothing else changes)."""
    if push.version is not None and push.id:
        return f"youzan/{push.type}/{push.id}/{push.version}"[:128]
    if push.msg_id:
        return f"youzan/{push.msg_id}"
    raise MalformedPush("a push needs id and version (or msg_id) to be recognised when redelivered")


def decode_msg(push: YouzanPush) -> str:
    """``msg`` URL-decoded as the documentation's decoders do (``+`` is a space), strictly UTF-8."""
    try:
        return unquote_plus(push.msg, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedPush("msg is not URL-encoded UTF-8") from exc


def _parse(model: type[_M], text: str, push_type: str) -> _M:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "msg"
        raise MalformedPush(f"msg of {push_type} is not the documented shape: {where}: {first['msg']}") from exc


def _stored(conn: Connection, order_no: str) -> StoredOrder | None:
    o = ShopOrder.__table__.c
    row = conn.execute(select(o.order_no, o.customer_id, o.status, o.amount, o["items"], o.address, o.created_at)
                       .where(o.order_no == order_no)).mappings().first()
    return StoredOrder(**row) if row is not None else None


def _is_customer(conn: Connection, customer_id: str) -> bool:
    c = Customer.__table__.c
    return conn.execute(select(c.id).where(c.id == customer_id)).first() is not None


def find_customer(conn: Connection, buyer: BuyerInfo, stored: StoredOrder | None) -> str:
    """The customer the order belongs to, from what 有赞 and the shop's own records say (see the module doc)."""
    if stored is not None and _is_customer(conn, stored.customer_id):
        return stored.customer_id
    candidates = buyer.identities()
    if candidates:
        c = Customer.__table__.c
        found = set(conn.execute(select(c.id).where(c.id.in_(candidates))).scalars())
        match = next((cid for cid in candidates if cid in found), None)
        if match is not None:
            return match
    return stored.customer_id if stored is not None else buyer.placeholder()


def order_from_trade(detail: TradeDetail, customer_id: str) -> OrderIn:
    """The trade as our order: tid, 实付 (元), items, the plaintext part of the address, the creation time."""
    full = detail.full_order_info
    info = full.order_info
    created = info.created or info.pay_time or info.update_time
    if created is None:
        raise MalformedPush(f"trade {info.tid} has no created, pay_time or update_time")
    payment = full.pay_info.payment
    return OrderIn(order_no=info.tid, customer_id=customer_id, amount=float(payment or 0),
                   items=[i.as_item() for i in full.orders], address=full.address_info.as_text(), created_at=created)


def _partial(refunded: Decimal | None, amount: float) -> bool:
    """A refund of less than the order's amount (a returned item) leaves the order going; the refunded event (and
    status) is for an order refunded whole — which 有赞 follows with trade_TradeClose."""
    return refunded is not None and amount > 0 and float(refunded) < amount - 0.005


def _close_event(stored: StoredOrder) -> EventType:
    """A closed 有赞 order that had been paid was fully refunded; one never paid was cancelled."""
    return "refunded" if "paid" in IMPLIED.get(stored.status, frozenset()) else "cancelled"


def to_event(engine: Engine, push: YouzanPush, *, now: datetime) -> OrderEventIn | Ignored:
    """The order event a mapped push means, or why it means none."""
    kind = MAPPED[push.type]
    text = decode_msg(push)
    eid = event_id(push)
    try:
        if push.type in DETAIL_TYPES:
            detail = _parse(TradeDetail, text, push.type)
            info = detail.full_order_info.order_info
            with engine.connect() as conn:
                customer = find_customer(conn, detail.full_order_info.buyer_info, _stored(conn, info.tid))
            return OrderEventIn(event_id=eid, type=kind, at=info.pay_time or info.update_time or now,
                                order=order_from_trade(detail, customer), shipment=detail.parcel())
        change = _parse(TradeChange, text, push.type)
        with engine.connect() as conn:
            stored = _stored(conn, change.tid)
        if stored is None:
            if push.type == "trade_TradeClose":  # mostly an unpaid order expiring: nobody to tell
                return Ignored("closed an order never seen paid (nothing to tell)")
            raise OrderNotYetKnown(f"order {change.tid} is not known yet (its paid push has not arrived); "
                                   "有赞 will redeliver this one")
        if push.type == "trade_TradeClose":
            kind = _close_event(stored)
        if kind == "refunded" and _partial(change.refunded_fee, stored.amount):
            return Ignored(f"partial refund ({change.refunded_fee} of {stored.amount:.2f} 元): the order goes on")
        return OrderEventIn(event_id=eid, type=kind, at=change.update_time or now, order=stored.as_order())
    except ValidationError as exc:  # the trade parsed but does not fit our order (an amount or text out of range)
        first = exc.errors(include_url=False, include_input=False)[0]
        raise MalformedPush(f"{push.type}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc


def apply_push(engine: Engine, push: YouzanPush, *, now: datetime) -> Outcome:
    """Apply a verified push: store the order (and parcel) and queue the events it newly implies, once.

    Raises :class:`MalformedPush` for a message that is not the documented shape and :class:`OrderNotYetKnown`
    for a status push that came before its order's paid push."""
    if push.test:
        return Outcome(ignored="test message")
    if push.type not in MAPPED:
        return Outcome(ignored=f"{push.type} is not an order event we use")
    event = to_event(engine, push, now=now)
    if isinstance(event, Ignored):
        return Outcome(event_id=event_id(push), ignored=event.reason)
    return Outcome(event_id=event.event_id, applied=apply_event(engine, event, now=now))
