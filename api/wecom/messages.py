"""Safe XML parsing of callback envelopes and messages, and the dedupe key of a callback."""

from __future__ import annotations

import hashlib
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from api.wecom.crypto import XML_INVALID, CryptoError


def _parse(text: str | bytes) -> Element:
    try:
        root = fromstring(text, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise CryptoError(XML_INVALID, f"malformed XML: {exc}") from exc
    if root.tag != "xml":
        raise CryptoError(XML_INVALID, f"root element is <{root.tag}>, expected <xml>")
    return root


def envelope_encrypt(body: bytes) -> str:
    """The ``Encrypt`` value of a POSTed envelope."""
    node = _parse(body).find("Encrypt")
    if node is None or not (node.text or "").strip():
        raise CryptoError(XML_INVALID, "envelope has no Encrypt element")
    return node.text.strip()


def _value(node: Element) -> Any:
    children = list(node)
    if not children:
        return (node.text or "").strip()
    if all(child.tag == "Item" for child in children):
        return [_value(child) for child in children]
    return {child.tag: _value(child) for child in children}


def parse_message(xml: str) -> dict[str, Any]:
    """A decrypted message as a dict of its elements (nested lists for ``<Item>`` sequences)."""
    value = _value(_parse(xml))
    return value if isinstance(value, dict) else {}


def dedupe_key(message: dict[str, Any], plaintext: str) -> str:
    """MsgId for messages; for events the fields WeCom keeps stable across retries (wecom.md §1)."""
    if message.get("MsgId"):
        return f"msg/{message['MsgId']}"
    if message.get("MsgType") == "event":
        event = message.get("Event", "")
        if event == "kf_msg_or_event":
            return f"kf/{message.get('OpenKfId', '')}/{message.get('Token', '')}"
        parts = [event, message.get("ChangeType", ""), message.get("UserID", ""),
                 message.get("ExternalUserID", "") or message.get("ChatId", ""), message.get("CreateTime", "")]
        return "event/" + "/".join(str(p) for p in parts)
    return "raw/" + hashlib.sha1(plaintext.encode()).hexdigest()
