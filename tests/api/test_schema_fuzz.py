"""Schemathesis over the app's own OpenAPI schema: every operation of the operator API, web chat and the WeCom
callback gets schema-valid and schema-violating paths, queries and bodies; no input may give a server error.

Deterministic (derandomized Hypothesis, no example database) and short: 25 valid plus 25 invalid examples per
operation. The pump does not run and chat waits a millisecond for replies, so the input handling is what is
exercised and nothing depends on machine speed. Raw callback bodies are fuzzed in ``test_fuzz.py``.

(Schemathesis' own ``@schema.parametrize()`` with a fixture-built schema reads a pytest internal that pytest 9
removed, so each operation's strategy is driven by Hypothesis directly.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.app import create_app
from api.service import Service
from knowledge.clock import SimClock
from tests.api.conftest import NOW, OPERATOR, wecom_settings

EXAMPLES_PER_MODE = 25


@pytest.fixture
def api_schema(tmp_path, fake):
    service = Service.build(wecom_settings(tmp_path / "home", chat_wait_seconds=0.001), clock=SimClock(NOW),
                            wecom_transport=fake.transport())
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(service, run_pump=False))
    service.stop()


def _has_inputs(operation) -> bool:
    return bool(operation.path_parameters or operation.query or operation.headers or operation.body)


def _no_server_error(operation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers={"Authorization": f"Bearer {OPERATOR}"})
        assert response.status_code < 500, f"{operation.label}: {response.status_code} {response.text[:300]}"

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE or _has_inputs(operation):
            raise  # only an operation without parameters or body has no invalid input to generate


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_generated_input_gives_a_server_error(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /chat", "POST /wecom/callback", "PUT /api/sops/{sop_id}",
                                               "POST /api/knowledge/{kind}"}
    for operation in operations:
        _no_server_error(operation, mode)
