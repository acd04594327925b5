"""The WeCom client: token cache and single-flight refresh, token-expiry retry, backoff, API base routing."""

import threading

import httpx
import pytest

from api.wecom.client import WeComClient, WeComError
from api.wecom.fake import FakeWeCom
from tests.api.conftest import wecom_settings


def _client(tmp_path, fake, **extra):
    return WeComClient(wecom_settings(tmp_path, **extra), transport=fake.transport(), sleep=lambda _: None)


def test_token_is_fetched_once_and_reused(tmp_path):
    fake = FakeWeCom()
    client = _client(tmp_path, fake)
    client.app_message(touser="u1", content="a")
    client.app_message(touser="u1", content="b")
    assert fake.tokens_issued == 1


def test_concurrent_callers_share_one_token_fetch(tmp_path):
    fake = FakeWeCom()
    client = _client(tmp_path, fake)
    threads = [threading.Thread(target=client.token) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.tokens_issued == 1


def test_expired_token_is_refetched_and_the_call_retried_once(tmp_path):
    fake = FakeWeCom()
    client = _client(tmp_path, fake)
    client.token()
    fake.tokens_issued += 1  # the server rotated: our cached token is now stale
    fake.expire_tokens = True
    client.app_message(touser="u1", content="hi")
    assert len(fake.sent("/cgi-bin/message/send")) == 2


def test_busy_and_rate_limit_back_off_and_retry(tmp_path):
    fake = FakeWeCom()
    fake.fail_next["/cgi-bin/message/send"] = [-1, 45009]
    _client(tmp_path, fake).app_message(touser="u1", content="hi")
    assert len(fake.sent("/cgi-bin/message/send")) == 3


def test_other_errors_are_raised_with_their_code(tmp_path):
    fake = FakeWeCom()
    fake.fail_next["/cgi-bin/message/send"] = [60020]
    with pytest.raises(WeComError) as err:
        _client(tmp_path, fake).app_message(touser="u1", content="hi")
    assert err.value.errcode == 60020


def test_every_call_goes_to_the_configured_api_base(tmp_path):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"errcode": 0, "access_token": "tok1", "expires_in": 7200})

    client = WeComClient(wecom_settings(tmp_path, wecom_api_base="http://staging.local:9000"),
                         transport=httpx.MockTransport(handler))
    client.app_message(touser="u", content="x")
    assert all(url.startswith("http://staging.local:9000/cgi-bin/") for url in seen)


def test_timeouts_are_retried_then_raised(tmp_path):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadTimeout("slow", request=request)

    client = WeComClient(wecom_settings(tmp_path), transport=httpx.MockTransport(handler), sleep=lambda _: None)
    with pytest.raises(httpx.ReadTimeout):
        client.token()
    assert len(calls) == 3
