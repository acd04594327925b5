"""A service wired to the fake WeCom API, on a simulated clock, and helpers to post encrypted callbacks."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Service
from api.wecom.crypto import WeComCrypto, signature
from api.wecom.fake import FakeWeCom
from knowledge.clock import SimClock
from knowledge.settings import Settings

TOKEN, AES_KEY, CORP = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo", "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt", "ww1436e0e65a779aee"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
OPERATOR = "op-secret"


def wecom_settings(home, **extra) -> Settings:
    values = dict(home=home, embedder="hash", burst_window_seconds=0, wecom_corp_id=CORP, wecom_token=TOKEN,
                  wecom_aes_key=AES_KEY, wecom_secret="app-secret", wecom_agent_id=1000002,
                  wecom_api_base="https://wecom.fake", operator_token=OPERATOR)
    return Settings(**(values | extra))


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom()


@pytest.fixture
def service(tmp_path, fake) -> Service:
    svc = Service.build(wecom_settings(tmp_path / "home"), clock=SimClock(NOW), wecom_transport=fake.transport())
    yield svc
    svc.stop()


@pytest.fixture
def client(service) -> TestClient:
    return TestClient(create_app(service, run_pump=False))


@pytest.fixture
def operator_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR}"}


def envelope(xml: str, *, timestamp: int | None = None, nonce: str = "n1") -> tuple[dict[str, str], bytes]:
    """Query and body of a callback as WeCom would POST it."""
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP)
    ts = str(timestamp if timestamp is not None else int(NOW.timestamp()))
    encrypted = crypto.encrypt(xml)
    query = {"msg_signature": signature(TOKEN, ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return query, body.encode()


def event_xml(event: str, **fields: str) -> str:
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>{inner}</xml>")


def post(client: TestClient, xml: str, **kwargs):
    query, body = envelope(xml, **kwargs)
    return client.post("/wecom/callback", params=query, content=body)
