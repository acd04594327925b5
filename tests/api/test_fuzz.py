"""Property tests: no input to the operator API or the callback endpoint produces a 500."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import OPERATOR

ROUTES = [
    ("GET", "/api/sops/{a}"), ("GET", "/api/sops/{a}/graph"), ("GET", "/api/sops/{a}/versions"),
    ("PUT", "/api/sops/{a}"), ("POST", "/api/sops/{a}/publish"), ("POST", "/api/sops/{a}/pause"),
    ("GET", "/api/customers"), ("GET", "/api/customers/{a}"), ("GET", "/api/customers/{a}/timeline"),
    ("GET", "/api/customers/{a}/runs"), ("POST", "/api/conversations/{a}/takeover"),
    ("POST", "/api/conversations/{a}/release"), ("GET", "/api/tasks"), ("POST", "/api/tasks/{a}/complete"),
    ("POST", "/api/knowledge/{a}"), ("GET", "/api/audit"),
]
segment = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#%"), min_size=1,
                  max_size=20)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)
bodies = st.one_of(json_values, st.fixed_dictionaries({"yaml": st.text(max_size=200)}),
                   st.fixed_dictionaries({"version": st.integers(-5, 5)}),
                   st.fixed_dictionaries({"format": st.sampled_from(["csv", "json", "md", "x"]),
                                          "content": st.text(min_size=1, max_size=200)}))
queries = st.dictionaries(st.sampled_from(["tag", "stage", "q", "limit", "offset", "status", "assignee", "active"]),
                          st.text(max_size=12), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), a=segment, body=bodies, query=queries)
def test_operator_api_never_answers_500(client, route, a, body, query):
    method, template = route
    response = client.request(method, template.format(a=a), params=query, json=body,
                              headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code < 500, response.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]),
                             st.text(max_size=40), max_size=4),
       body=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: f"<xml><Encrypt>{t}</Encrypt></xml>".encode()))
def test_callback_endpoint_never_answers_500(client, query, body):
    assert client.post("/wecom/callback", params=query, content=body).status_code < 500
    assert client.get("/wecom/callback", params=query).status_code < 500
