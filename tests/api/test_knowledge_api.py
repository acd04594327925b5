"""What is indexed: counts per kind, the documents paged, and a trial search ranked as the agent ranks."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _shop(service) -> None:
    service.runtime.load_demo_shop()


def test_every_kind_is_counted_and_indexed(client, operator_headers):
    kinds = {k["kind"]: k for k in client.get("/api/knowledge", headers=operator_headers).json()}
    assert set(kinds) == {"products", "faq", "policy", "promotions"}
    assert kinds["products"]["documents"] > 0 and kinds["products"]["indexed"] == kinds["products"]["documents"]


def test_documents_are_paged_with_a_total(client, operator_headers):
    response = client.get("/api/knowledge/products/documents?limit=2", headers=operator_headers)
    assert response.status_code == 200 and len(response.json()) == 2
    assert int(response.headers["X-Total-Count"]) >= 2


def test_a_trial_search_ranks_the_matching_faq_first(client, operator_headers):
    hits = client.get("/api/knowledge/search", params={"q": "发什么快递", "kind": "faq"}, headers=operator_headers).json()
    assert hits and "快递" in hits[0]["title"] + hits[0]["text"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_an_unknown_kind_is_422(client, operator_headers):
    assert client.get("/api/knowledge/orders/documents", headers=operator_headers).status_code == 422
