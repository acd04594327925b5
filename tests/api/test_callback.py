"""The callback endpoint: verification, storage and acknowledgement, and a specific 4xx per bad input."""

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.service import Service
from api.tables import WecomCallback
from knowledge.clock import SimClock
from tests.api.conftest import envelope, event_xml, post, wecom_settings

A_ECHO = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
ADD = event_xml("change_external_contact", ChangeType="add_external_contact", UserID="zhangsan",
                ExternalUserID="wmABC", State="qr_store1", WelcomeCode="WELCOME1")


def _stored(service):
    with service.inbox.connect() as conn:
        return conn.execute(select(WecomCallback.__table__)).mappings().all()


def test_url_verification_returns_the_plain_echo(tmp_path, fake):
    at = datetime.fromtimestamp(1476416373, tz=UTC)
    service = Service.build(wecom_settings(tmp_path), clock=SimClock(at), wecom_transport=fake.transport())
    client = TestClient(create_app(service, run_pump=False))
    response = client.get("/wecom/callback", params={"msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
                                                      "timestamp": "1476416373", "nonce": "47744683",
                                                      "echostr": A_ECHO})
    assert response.status_code == 200
    assert response.content == b"1288432023552776189"
    service.stop()


def test_valid_callback_is_stored_and_acknowledged_with_an_empty_200(client, service):
    response = post(client, ADD)
    assert response.status_code == 200 and response.content == b""
    assert [r["kind"] for r in _stored(service)] == ["change_external_contact"]


def test_retried_callback_is_stored_once(client, service):
    post(client, ADD, nonce="first")
    post(client, ADD, nonce="retry")
    assert len(_stored(service)) == 1


def test_bad_signature_is_401(client):
    query, body = envelope(ADD)
    query["msg_signature"] = "0" * 40
    assert client.post("/wecom/callback", params=query, content=body).status_code == 401


def test_stale_timestamp_is_403(client):
    assert post(client, ADD, timestamp=1_000_000_000).status_code == 403


def test_timestamp_of_non_decimal_digits_is_400(client):
    query, body = envelope(ADD)
    query["timestamp"] = "¹"  # a digit to str.isdigit(), not a number to int(); hypothesis found it as a 500
    assert client.post("/wecom/callback", params=query, content=body).status_code == 400


def test_oversized_body_is_413(client):
    query, _ = envelope(ADD)
    assert client.post("/wecom/callback", params=query, content=b"<xml>" + b"a" * 70_000 + b"</xml>").status_code == 413


def test_malformed_xml_is_400(client):
    query, _ = envelope(ADD)
    assert client.post("/wecom/callback", params=query, content=b"<xml><Encrypt>").status_code == 400


def test_entity_expansion_is_refused_as_bad_xml(client):
    query, _ = envelope(ADD)
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    assert client.post("/wecom/callback", params=query, content=bomb).status_code == 400


def test_missing_parameters_are_400(client):
    assert client.post("/wecom/callback", content=b"<xml/>").status_code == 400


def test_undecryptable_payload_is_400(client):
    query, _ = envelope(ADD)
    from api.wecom.crypto import signature
    from tests.api.conftest import TOKEN
    query["msg_signature"] = signature(TOKEN, query["timestamp"], query["nonce"], "bm90IGNpcGhlcg==")
    body = b"<xml><Encrypt>bm90IGNpcGhlcg==</Encrypt></xml>"
    assert client.post("/wecom/callback", params=query, content=body).status_code == 400


def test_callback_without_wecom_configuration_is_404(tmp_path):
    from knowledge.settings import Settings

    service = Service.build(Settings(home=tmp_path, embedder="hash"), clock=SimClock(datetime.now(UTC)))
    client = TestClient(create_app(service, run_pump=False))
    assert client.get("/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "1",
                                                 "echostr": "x"}).status_code == 404
    service.stop()
