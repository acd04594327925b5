"""Bounded input everywhere: bad input is a clear 4xx, never a 500, and never unbounded memory."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.app import create_app
from tests.api.conftest import envelope
from tests.sop_graphs.test_validator import ALIAS_BOMB, PADDED

LIMIT = 1024 * 1024  # Settings.max_body_bytes default


def _asgi_send(app, path: str, *, headers: list[tuple[bytes, bytes]], chunks: int, chunk: bytes,
               method: str = "POST"):
    """A request straight to the ASGI app, feeding ``chunks`` body messages; returns (status, body, chunks pulled)."""
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("testclient", 50000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled


# -- body size ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "content_type"), [("POST", "/chat", b"application/json"),
                                                              ("PUT", "/api/sops/x", b"application/json"),
                                                              ("PUT", "/api/sops/x", b"text/plain")])
def test_body_over_the_limit_is_413_even_without_content_length(service, method, path, content_type):
    app = create_app(service, run_pump=False)
    chunk = b" " * 65536
    status, body, pulled = _asgi_send(app, path, headers=[(b"content-type", content_type),
                                                          (b"transfer-encoding", b"chunked")],
                                      chunks=10_000, chunk=chunk, method=method)  # 655 MB, never read to its end
    assert status == 413 and body == {"detail": f"request body larger than {LIMIT} bytes"}
    assert pulled == LIMIT // len(chunk) + 1  # counted while streaming: refused at the first chunk past the limit


def test_declared_content_length_over_the_limit_is_refused_before_reading(service):
    app = create_app(service, run_pump=False)
    status, body, pulled = _asgi_send(app, "/chat", headers=[(b"content-type", b"application/json"),
                                                             (b"content-length", str(300 * 2**20).encode())],
                                      chunks=1, chunk=b"{}")
    assert (status, pulled) == (413, 0) and "larger than" in body["detail"]


def test_chunked_body_over_the_limit_is_413_through_the_http_client(client, operator_headers):
    stream = (b" " * 65536 for _ in range(LIMIT // 65536 + 2))  # a generator: no Content-Length, chunked
    response = client.put("/api/sops/x", content=stream, headers={**operator_headers,
                                                                  "content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


def test_body_limit_is_a_setting(tmp_path, fake):
    from api.service import Service
    from knowledge.clock import SimClock
    from tests.api.conftest import NOW, wecom_settings

    service = Service.build(wecom_settings(tmp_path / "home", max_body_bytes=4096), clock=SimClock(NOW),
                            wecom_transport=fake.transport())
    try:
        status, body, _ = _asgi_send(create_app(service, run_pump=False), "/chat",
                                     headers=[(b"content-type", b"application/json")], chunks=3, chunk=b" " * 2048)
        assert status == 413 and body["detail"] == "request body larger than 4096 bytes"
    finally:
        service.stop()


def test_knowledge_import_has_its_own_larger_limit(client, operator_headers):
    content = "## 退换货\n\n" + "七天无理由退换。" * 60_000  # ~1.4 MB of UTF-8, over the general limit
    response = client.post("/api/knowledge/faq", json={"format": "md", "content": content},
                           headers=operator_headers)
    assert response.status_code == 200 and response.json()["ok"]


def test_oversized_callback_body_is_413_without_content_length(client):
    query, _ = envelope("<xml/>")
    response = client.post("/wecom/callback", params=query, content=(b"x" * 8192 for _ in range(20)))
    assert response.status_code == 413


# -- JSON ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [33, 250, 100_000])
def test_deeply_nested_json_is_422(client, operator_headers, depth):
    body = '{"yaml": "id: x", "extra": ' + "[" * depth + "]" * depth + "}"
    response = client.put("/api/sops/x", content=body, headers={**operator_headers,
                                                                "content-type": "application/json"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid" and "nested deeper than 32 levels" in error["msg"]


@pytest.mark.parametrize("escape", [r"\ud800", r"\udfff", r"x\ud800y", r"\ud800\u0041"])
def test_lone_surrogate_in_a_json_string_is_422(client, operator_headers, escape):
    for path, body in (("/chat", f'{{"text": "{escape}"}}'), ("/api/sops/x", f'{{"yaml": "id: {escape}"}}')):
        response = client.request("PUT" if path.startswith("/api") else "POST", path, content=body,
                                  headers={**operator_headers, "content-type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid", body


def test_invalid_utf8_body_is_422(client):
    response = client.post("/chat", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"


def test_a_surrogate_pair_is_valid_unicode_and_reaches_the_route(client, operator_headers):
    response = client.put("/api/sops/x", content=r'{"yaml": "id: x\ud83d\ude00"}',
                          headers={**operator_headers, "content-type": "application/json"})
    assert response.status_code == 422 and "problems" in response.json()  # SOP validation, not a JSON error


# -- integers -----------------------------------------------------------------------------------------

def test_integers_of_64_bits_and_more_are_422_in_path_query_and_body(client, operator_headers):
    for method, url, kwargs in (
            ("POST", f"/api/tasks/{2**63}/complete", {}),
            ("POST", f"/api/tasks/{'9' * 310}/complete", {}),
            ("GET", "/api/customers", {"params": {"offset": 2**64}}),
            ("GET", "/api/audit", {"params": {"limit": "9" * 5000}}),
            ("POST", "/api/sops/new_customer_nurture/publish", {"json": {"version": 2**63}}),
            ("POST", "/api/sops/new_customer_nurture/publish", {"content": '{"version": ' + "9" * 5000 + "}"})):
        response = client.request(method, url, headers={**operator_headers, "content-type": "application/json"},
                                  **kwargs)
        assert response.status_code == 422, (url, kwargs, response.text)
    assert client.post(f"/api/tasks/{2**63 - 1}/complete", headers=operator_headers).status_code == 404


def test_callback_timestamp_of_310_digits_is_400_not_500(client):
    query = {"msg_signature": "a" * 40, "timestamp": "9" * 310, "nonce": "n1", "echostr": "x"}
    for response in (client.post("/wecom/callback", params=query, content=b"<xml/>"),
                     client.get("/wecom/callback", params=query)):
        assert response.status_code == 400 and "timestamp" in response.json()["error"]


# -- YAML and templates over the API --------------------------------------------------------------------

def test_yaml_alias_bomb_put_is_422_with_its_line(client, operator_headers):
    response = client.put("/api/sops/bomb", json={"yaml": ALIAS_BOMB}, headers=operator_headers)
    assert response.status_code == 422
    (problem,) = response.json()["problems"]
    assert problem["line"] == 2 and "anchors and aliases" in problem["reason"]


@pytest.mark.parametrize("text", ["id: &a [*a]\n", "id: x\nname: " + "[" * 3000 + "]" * 3000 + "\n",
                                  "id: x\nversion: " + "9" * 400 + "\n", "id: x\nname: !!timestamp soon\n"])
def test_recursive_alias_deep_nesting_and_bad_scalars_are_422_not_500(client, operator_headers, text):
    response = client.put("/api/sops/x", json={"yaml": text}, headers=operator_headers)
    assert response.status_code == 422 and "malformed YAML" in response.json()["problems"][0]["reason"]


def test_template_format_spec_put_is_422_with_its_line(client, operator_headers):
    response = client.put("/api/sops/padded", json={"yaml": PADDED}, headers=operator_headers)
    assert response.status_code == 422
    assert any(p["line"] == 9 and "not a plain {name} placeholder" in p["reason"]
               for p in response.json()["problems"])


def test_bad_knowledge_mapping_is_400_naming_the_mapping_and_line(client, operator_headers):
    response = client.post("/api/knowledge/products", headers=operator_headers, json={
        "format": "csv", "content": "sku,name,price\nA1,霜,99\n",
        "mapping": "fields: {sku: sku}\nvalues: &v [*v]\n"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("mapping.yaml:2: invalid YAML: anchors and aliases") and "/tmp" not in detail
