"""The runner: isolation, first failure with a diff, policy checks, LLM cassettes (record, replay, missing)."""

import json
from pathlib import Path

import httpx

from evals.case import Case
from evals.checks import state_hash
from evals.report import console_lines
from evals.runner import CaseRun, aggregate, run_case
from tests.agent.test_llm_brain import text, understanding


def _case(**data) -> Case:
    return Case.model_validate({"id": "t", "title": "t", **data})


PRICE = {"world": {"customers": [{"id": "c1", "name": "小林", "added": False, "stage": "active", "tags": ["干皮"]}]},
         "steps": [{"say": "玻尿酸水润保湿面霜多少钱", "expect": [{"reply_contains": ["¥199"]}]}]}


def test_passing_case_reports_its_checks():
    result = run_case(_case(**PRICE), embedder="hash")
    assert result.passed and result.assertions == 1


def test_failure_names_the_step_and_shows_what_was_said():
    case = _case(steps=[{"say": "你好", "expect": [{"reply_contains": ["不会出现的词"]}]}])
    result = run_case(case, embedder="hash")
    assert not result.passed and result.failure["what"].startswith("step 1 say")
    assert "不会出现的词" in result.failure["diff"]
    assert console_lines([result])[0].startswith("FAIL t: step 1")


def test_cases_do_not_share_state():
    first = run_case(_case(steps=[{"say": "4"}], expect=[{"tags": {"include": ["敏感肌"]}}]), embedder="hash")
    second = run_case(_case(steps=[{"wait": "+1h"}], expect=[{"tags": {"exclude": ["敏感肌"]}}]), embedder="hash")
    assert first.passed and second.passed


def test_state_hash_assertion_detects_a_change():
    result = run_case(_case(steps=[{"wait": "+1h"}], expect=[{"state_hash": state_hash({})}]), embedder="hash")
    assert not result.passed and "expected" in result.failure["diff"]


def test_metrics_aggregate_over_runs():
    results = [run_case(_case(**PRICE), repeat=r, embedder="hash") for r in range(2)]
    metrics = aggregate(results)
    assert metrics["pass^k"] == 1.0 and metrics["k"] == 2 and metrics["fact_accuracy"] == 1.0


class FakeOpenAI(httpx.BaseTransport):
    def __init__(self) -> None:
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        body = json.loads(request.content)
        handler = understanding(intent="product_question", products=["玻尿酸水润保湿面霜"]) if body.get("tools") \
            else text("「玻尿酸水润保湿面霜 50g」到手价 ¥199。")
        return handler(body)


def test_live_run_records_cassettes_that_replay_without_the_endpoint(tmp_path: Path):
    case = _case(**PRICE)
    endpoint = FakeOpenAI()
    live = CaseRun(case, "live", 0, "hash", cassettes=tmp_path, live_transport=endpoint).run(0)
    assert live.passed and endpoint.calls == 2 and (tmp_path / "t.json").exists()
    replay = CaseRun(case, "replay", 0, "hash", cassettes=tmp_path).run(0)
    assert replay.passed and replay.llm_calls == 2 and replay.llm_tokens == 4


def test_missing_cassette_is_a_clear_error_naming_case_and_step(tmp_path: Path):
    result = CaseRun(_case(**PRICE), "replay", 0, "hash", cassettes=tmp_path).run(0)
    assert not result.passed
    assert "missing LLM cassette for case 't' at step 1" in result.error
