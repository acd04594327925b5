"""Rendering the daily report: HTML, Markdown, JSON, the WeCom summary, and the SVG charts behind them."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from api.report import charts
from api.report.render import (
    WECOM_MARKDOWN_MAX_BYTES,
    operator_summary,
    pct,
    render_html,
    render_json,
    render_markdown,
    utf8_clip,
)
from api.report.schema import Anomaly, GoalResult, Report, SopFunnel, StepFunnel, Trend, TrendPoint
from tests.api.report.samples import HOSTILE, empty_report, sample_report

SECTIONS = ["概览", "目标达成", "异常", "趋势", "SOP 漏斗", "发送与任务", "回复与问卷", "优惠券与归因", "投诉与转人工",
            "社群打卡", "需关注的会话", "内容缺口", "优化建议", "版本对比"]

# Anything that would make the page fetch or point at something outside itself.
EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*://|[\"'(=,\s]//|\bsrc\s*=|\bsrcset\s*=|\burl\s*\(|@import|<link\b|"
                      r"<script\b|<iframe\b|<object\b|<embed\b|\bxlink:href\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def report() -> Report:
    return sample_report()


@pytest.fixture(scope="module")
def html(report: Report) -> str:
    return render_html(report)


@pytest.fixture(scope="module")
def markdown(report: Report) -> str:
    return render_markdown(report)


def _trend(values: list[float | None], unit: str = "rate", metric: str = "reply_rate") -> Trend:
    start = date(2026, 11, 10)
    return Trend(metric=metric, label="回复率", unit=unit,  # type: ignore[arg-type]
                 points=[TrendPoint(day=start + timedelta(days=i), value=v) for i, v in enumerate(values)])


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


# --------------------------------------------------------------------------------------------- HTML


def test_html_references_nothing_outside_itself(html: str) -> None:
    assert EXTERNAL.findall(html) == []


def test_html_is_a_single_utf8_document_with_inline_style(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html
    assert html.count("<style>") == 1
    assert 'name="viewport"' in html


def test_every_sop_funnel_has_its_chart(report: Report, html: str) -> None:
    for funnel in report.metrics.funnels:
        assert html.count(f'data-chart="funnel:{funnel.sop_id}"') == 1, funnel.sop_id


def test_every_trend_has_its_chart(report: Report, html: str) -> None:
    for trend in report.trends:
        assert html.count(f'data-chart="trend:{trend.metric}"') == 1, trend.metric


def test_sends_by_mode_has_its_chart(html: str) -> None:
    assert html.count('data-chart="sends:by_mode"') == 1


def test_customer_text_is_escaped_in_html(html: str) -> None:
    assert "<script" not in html
    assert str(escape(HOSTILE)) in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_every_section_appears_in_html_in_order(html: str) -> None:
    positions = [html.index(f"<h2>{title}</h2>") for title in SECTIONS]
    assert positions == sorted(positions)


def test_unsafe_customer_link_is_shown_as_text_not_linked(report: Report) -> None:
    bad = report.model_copy(deep=True)
    bad.flagged[0].link = "javascript:alert(1)"
    page, md = render_html(bad), render_markdown(bad)
    assert 'href="javascript' not in page
    assert "](javascript" not in md


def test_report_with_two_versions_of_one_sop_gets_distinct_funnel_charts(report: Report) -> None:
    twice = report.model_copy(deep=True)
    again = twice.metrics.funnels[0].model_copy(update={"version": 4})
    twice.metrics.funnels.append(again)
    page = render_html(twice)
    sop = again.sop_id
    assert f'data-chart="funnel:{sop}@v3"' in page and f'data-chart="funnel:{sop}@v4"' in page


# --------------------------------------------------------------------------------------------- Markdown


def test_markdown_has_every_section_heading(markdown: str) -> None:
    headings = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert headings == SECTIONS


def test_markdown_names_every_sop_funnel(report: Report, markdown: str) -> None:
    for funnel in report.metrics.funnels:
        assert re.search(rf"^### {re.escape(funnel.name)}（", markdown, re.MULTILINE), funnel.name


def test_customer_text_cannot_break_markdown_tables(markdown: str) -> None:
    tables: list[list[str]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if previous.startswith("|"):
                tables[-1].append(line)
            else:
                tables.append([line])
        previous = line
    assert len(tables) >= 10
    for table in tables:
        widths = {_unescaped_pipes(row) for row in table}
        assert len(widths) == 1, table


def test_customer_text_is_escaped_in_markdown(markdown: str) -> None:
    assert "<script>" not in markdown
    assert r"\<script\>alert(1)\</script\>" in markdown
    assert r"\*\*李先生\*\*" in markdown


def test_multiline_customer_text_stays_on_one_markdown_line(markdown: str) -> None:
    assert "还没人理我？ / 再不处理我就差评了" in markdown


def test_markdown_shows_a_suggested_diff_in_a_diff_fence(markdown: str) -> None:
    assert '```diff\n--- a/sops/new_customer_nurture.yaml' in markdown
    assert '+    wait: {days: 1, at: "20:00"}' in markdown


def test_markdown_says_whether_a_suggestion_passed_validation(markdown: str) -> None:
    assert "校验：已通过 sopagent sop validate 校验" in markdown
    assert "校验：未通过校验" in markdown


def test_markdown_states_the_attribution_rule(report: Report, markdown: str) -> None:
    assert f"归因规则：{report.metrics.attribution.rule}" in markdown


def test_markdown_goal_table_shows_target_actual_baseline_and_status(markdown: str) -> None:
    assert "| 回复率 | 全店 | ≥ 30.0% | 21.0% | 31.3% | 未达成 |" in markdown
    assert "| 社群打卡率 | 全店 | ≥ 25.0% | — | — | 无数据 |" in markdown


def test_markdown_shows_version_before_and_after(markdown: str) -> None:
    assert "| 购后关怀 | 发布前 v4 | 2026-11-17 |" in markdown
    assert "| 购后关怀 | 发布后 v5 | 2026-11-17 |" in markdown


def test_diff_containing_a_fence_cannot_close_the_markdown_fence(report: Report) -> None:
    tricky = report.model_copy(deep=True)
    tricky.suggestions[0].diff = "+```\n+# injected heading\n"
    md = render_markdown(tricky)
    assert "````diff\n+```\n+# injected heading\n````" in md


# --------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("rate", "text"), [(0.28, "28.0%"), (0.0, "0.0%"), (1.0, "100.0%"), (0.12345, "12.3%"),
                                            (None, "—")])
def test_rates_format_as_percentages_with_one_decimal(rate: float | None, text: str) -> None:
    assert pct(rate) == text


def test_empty_report_renders_every_view() -> None:
    report = empty_report()
    page, md = render_html(report), render_markdown(report)
    assert "暂无数据" in page and 'data-chart="sends:by_mode"' in page
    assert re.findall(r"^## (.+)$", md, re.MULTILINE) == SECTIONS
    assert EXTERNAL.findall(page) == []
    assert json.loads(render_json(report))["shop"] == "空店"
    assert len(operator_summary(report).encode()) <= WECOM_MARKDOWN_MAX_BYTES


def test_json_round_trips_and_keeps_chinese_readable(report: Report) -> None:
    text = render_json(report)
    assert "山间茶舍" in text and "\\u5c71" not in text
    assert Report.model_validate_json(text) == report


# --------------------------------------------------------------------------------------------- operator summary


def _huge_report() -> Report:
    report = sample_report()
    label = "超长指标名称" * 40
    report.shop = "店" * 3000
    report.goals = [GoalResult(metric=f"m{i}", label=f"{label}{i}", scope="shop", op=">=", target=0.5, actual=0.1,
                               unit="rate", status="missed") for i in range(300)]
    report.anomalies = [Anomaly(metric=f"m{i}", label=label, scope="shop", actual=1, baseline=2, change=-0.5,
                                volume=100, rule="r" * 500) for i in range(500)]
    return report


def test_operator_summary_stays_within_wecom_byte_limit_for_a_huge_report() -> None:
    text = operator_summary(_huge_report(), link="/reports/2026-11-23")
    assert len(text.encode("utf-8")) <= WECOM_MARKDOWN_MAX_BYTES
    assert "超长指标名称" in text and "另有" in text
    assert text.endswith("[查看完整报告](/reports/2026-11-23)")


def test_operator_summary_names_missed_goals_only(report: Report) -> None:
    text = operator_summary(report, link="/reports/2026-11-23")
    assert "未达成目标 2 项" in text
    assert "回复率</font>（全店）实际 21.0%，目标 ≥ 30.0%" in text
    assert "首次回复中位时长</font>" in text
    assert "SOP 完成率" not in text and "社群打卡率" not in text


def test_operator_summary_has_date_key_numbers_anomalies_counts_and_link(report: Report) -> None:
    text = operator_summary(report, link="https://ops.example.com/r/2026-11-23")
    assert "2026-11-23" in text.splitlines()[0]
    assert "回复率 **21.0%**" in text and "新增客户 **42**" in text
    assert "异常 2 项" in text and "+122.5%" in text
    assert "需关注会话 **2** 个" in text and "优化建议 **3** 条" in text
    assert "[查看完整报告](https://ops.example.com/r/2026-11-23)" in text


def test_operator_summary_uses_only_wecom_markdown(report: Report) -> None:
    report = report.model_copy(update={"shop": "<b>店</b> | `x` [y](z) **"})
    text = operator_summary(report, link="/r")
    assert not any(line.lstrip().startswith(("|", "- ", "* ", "```")) for line in text.splitlines())
    assert set(re.findall(r'<font color="(\w+)">', text)) <= {"info", "comment", "warning"}
    assert re.sub(r'</?font[^>]*>', "", text).count("<") == 0
    assert "`" not in text


def test_utf8_clip_never_splits_a_character() -> None:
    text = "回复率😀" * 10
    for limit in range(0, 80):
        clipped = utf8_clip(text, limit)
        assert len(clipped.encode("utf-8")) <= limit and text.startswith(clipped)


@settings(max_examples=40, deadline=None)
@given(shop=st.text(max_size=3000), label=st.text(min_size=1, max_size=400), goals=st.integers(0, 60))
def test_operator_summary_is_always_valid_utf8_within_the_limit(shop: str, label: str, goals: int) -> None:
    report = sample_report()
    report.shop = shop
    report.goals = [GoalResult(metric="m", label=label, scope="shop", op="<=", target=1, actual=2, unit="count",
                               status="missed")] * goals
    data = operator_summary(report, link="/r").encode("utf-8")
    assert len(data) <= WECOM_MARKDOWN_MAX_BYTES
    data.decode("utf-8")


# --------------------------------------------------------------------------------------------- charts


def test_trend_with_a_goal_draws_the_target_as_a_dashed_line() -> None:
    svg = charts.trend_chart(_trend([0.3, 0.25, 0.2]), target=0.3)
    assert re.search(r'<line class="target"[^>]*stroke-dasharray', svg)
    assert "target" not in charts.trend_chart(_trend([0.3, 0.25, 0.2]))


def test_trend_gaps_split_the_line() -> None:
    svg = charts.trend_chart(_trend([0.1, 0.2, None, 0.3, 0.4, None, 0.5]))
    assert svg.count("<polyline") == 2
    assert svg.count("<circle") == 5


def test_one_point_trend_draws_a_dot() -> None:
    svg = charts.trend_chart(_trend([0.42]))
    assert svg.count("<circle") == 1 and "<polyline" not in svg and "42.0%" in svg


def test_trend_without_values_shows_a_placeholder() -> None:
    svg = charts.trend_chart(_trend([None, None]))
    assert 'data-chart="trend:reply_rate"' in svg and charts.EMPTY_TEXT in svg


def test_all_zero_data_draws_without_dividing_by_zero() -> None:
    funnel = SopFunnel(sop_id="s", name="空", version=1, steps=[StepFunnel(step_id="a", kind="message")])
    for svg in (charts.funnel_chart(funnel), charts.trend_chart(_trend([0, 0, 0], unit="count")),
                charts.sends_by_mode_chart({"kf": 0})):
        assert "nan" not in svg.lower() and "inf" not in svg.lower()
        assert "data-chart=" in svg


def test_empty_chart_data_shows_a_placeholder() -> None:
    funnel = SopFunnel(sop_id="s", name="空", version=1)
    assert charts.EMPTY_TEXT in charts.funnel_chart(funnel)
    assert charts.EMPTY_TEXT in charts.sends_by_mode_chart({})


def test_chart_text_is_escaped() -> None:
    svg = charts.sends_by_mode_chart({"<b>x</b>": 3})
    assert "<b>" not in svg and "&lt;b&gt;" in svg


def test_charts_are_deterministic(report: Report) -> None:
    assert render_html(report) == render_html(sample_report())
    svg = charts.trend_chart(report.trends[0], target=0.3)
    assert re.findall(r'\d+\.\d{2,}', re.sub(r"<title>.*?</title>", "", svg)) == []
