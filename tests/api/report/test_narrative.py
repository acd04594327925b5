"""The narrative: made from the facts offline; the model's only when every number in it is one of the facts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import httpx
from tenacity import wait_none

from agent.llm_brain import LLMBrain
from api.report import narrative
from api.report.schema import Attribution, GoalResult, Metrics, Narrative, Replies, Report, Service
from tests.agent.llm_fakes import FakeEndpoint, llm_settings, malformed, status, tool_call


def report() -> Report:
    metrics = Metrics(day=date(2026, 11, 25), timezone="Asia/Shanghai", new_customers=37,
                      new_by_channel={"live_qr": 21, "store_qr": 16}, enrolments=52,
                      replies=Replies(touched=120, replied=34, reply_rate=0.2833),
                      attribution=Attribution(rule="r", orders=9, gmv=1788.0, attributed_gmv=1290.0),
                      service=Service(sla_minutes=10, handoffs=4))
    goals = [GoalResult(metric="reply_rate", label="客户回复率", scope="shop", op=">=", target=0.3, actual=0.2833,
                        unit="rate", status="missed", baseline=0.31)]
    return Report(day=metrics.day, shop="小禾家", generated_at=datetime(2026, 11, 26, 1, tzinfo=UTC), metrics=metrics,
                  goals=goals, narrative=Narrative(text="", source="offline", checked=True))


class Writer:
    def __init__(self, text: str) -> None:
        self.text = text

    def ask(self, schema, system: str, user: str):
        assert "事实" in system and "28.3%" in system  # the facts went in, rates as percentages
        return schema(text=self.text)


def test_the_offline_narrative_states_the_days_numbers_and_the_missed_goals() -> None:
    text = narrative.offline(report()).text
    assert "新增客户 37 人" in text and "live_qr 21 人" in text and "客户回复率 28.3%" in text
    assert "未达成：客户回复率（全店）28.3%，目标 30.0%" in text
    assert narrative.unbacked_numbers(text, narrative.facts_of(report())) == []


def test_the_models_narrative_is_used_when_every_number_is_a_fact() -> None:
    text = "11月25日新增客户37人，以 live_qr 渠道的21人为主；客户回复率28.3%，低于30.0%的目标。支付订单9笔，GMV 1788元。"
    result = narrative.write(report(), Writer(text))
    assert (result.source, result.checked, result.text) == ("llm", True, text)


def test_a_models_narrative_with_a_number_not_in_the_facts_falls_back_to_the_offline_one() -> None:
    result = narrative.write(report(), Writer("新增客户42人，回复率28.3%。"))
    assert result.source == "offline" and result.note and "42" in result.note


def test_a_number_written_in_chinese_numerals_is_checked_too() -> None:
    assert narrative.unbacked_numbers("新增客户四十二人", narrative.facts_of(report())) == [42.0]
    assert narrative.unbacked_numbers("新增客户三十七人", narrative.facts_of(report())) == []


def _brain(tmp_path, *script) -> LLMBrain:
    endpoint = FakeEndpoint(*script)
    return LLMBrain(llm_settings(tmp_path / "home"), http_client=httpx.Client(transport=httpx.MockTransport(endpoint)),
                    wait=wait_none())


def test_the_narrative_is_a_typed_model_call_through_an_openai_compatible_endpoint(tmp_path) -> None:
    text = "新增客户37人，客户回复率28.3%，未达到30.0%的目标。"
    result = narrative.write(report(), _brain(tmp_path, tool_call(json.dumps({"text": text}, ensure_ascii=False))))
    assert result.source == "llm" and result.text == text


def test_an_endpoint_that_keeps_failing_gives_the_offline_narrative_with_a_note(tmp_path) -> None:
    result = narrative.write(report(), _brain(tmp_path, status(500), malformed, status(503)))
    assert result.source == "offline" and result.note and "模型不可用" in result.note
