"""The report's summary in Chinese: written by the model from the computed facts only, every number in its text
checked against them (a mismatch falls back); offline, the same facts make the text deterministically."""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import BaseModel, Field

from agent.brain import BrainUnavailable
from api.report.goals import METRICS
from api.report.schema import Narrative, Report
from knowledge.amounts import numbers

SYSTEM = """你是私域运营的复盘助手。根据下面 JSON 里的事实，用中文写 3–6 句当日复盘摘要：先说整体，再说未达成的目标和异常，
最后说最重要的一两条建议。只能使用事实里出现的数字（比率写成百分数，保留一位小数，例如 0.283 写作 28.3%），不要推算新数字，
不要编造原因。不要使用 Markdown 标题。
事实：{facts}"""


class NarrativeOut(BaseModel):
    text: str = Field(min_length=1, max_length=1200, description="中文复盘摘要")


class Writer(Protocol):
    def ask(self, schema: type[NarrativeOut], system: str, user: str) -> NarrativeOut: ...


def facts_of(report: Report) -> dict[str, Any]:
    """What the narrative may say: the report's headline numbers (rates as percentages with one decimal)."""
    m = report.metrics
    top_channel = next(iter(m.new_by_channel.items()), None)
    return {
        "日期": f"{report.day.month}月{report.day.day}日",
        "新增客户": m.new_customers,
        "主要渠道": {"渠道": top_channel[0], "人数": top_channel[1]} if top_channel else None,
        "SOP进入人次": m.enrolments,
        "发送条数": m.sends.total,
        "推迟": m.sends.deferred,
        "客户回复率": _pct(m.replies.reply_rate),
        "转人工": m.service.handoffs,
        "转人工SLA达成率": _pct(m.service.sla_rate),
        "支付订单": m.attribution.orders,
        "GMV": m.attribution.gmv,
        "SOP归因GMV": m.attribution.attributed_gmv,
        "目标": [{"指标": g.label, "范围": g.scope, "实际": _value(g.actual, g.unit), "目标": _value(g.target, g.unit),
                "状态": {"met": "达成", "missed": "未达成", "no_data": "无数据"}[g.status]} for g in report.goals],
        "异常": [{"指标": a.label, "范围": a.scope, "实际": _value(a.actual, _unit(a.metric, report)),
                "7日均值": _value(a.baseline, _unit(a.metric, report)), "变化": f"{a.change * 100:.1f}%"}
               for a in report.anomalies[:5]],
        "需关注会话": len(report.flagged),
        "内容缺口": [{"问题": g.label, "次数": g.count} for g in report.gaps[:3]],
        "建议": [s.title for s in report.suggestions[:3]],
    }


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value * 100:.1f}%"


def _value(value: float | None, unit: str) -> str | float | None:
    if value is None:
        return None
    if unit == "rate":
        return _pct(value)
    return int(value) if float(value).is_integer() else round(value, 2)


def _unit(metric: str, report: Report) -> str:
    return METRICS[metric].unit if metric in METRICS else "count"


def offline(report: Report) -> Narrative:
    """The summary made from the facts without a model."""
    f = facts_of(report)
    parts = [f"{f['日期']}新增客户 {f['新增客户']} 人"
             + (f"（{f['主要渠道']['渠道']} {f['主要渠道']['人数']} 人最多）" if f["主要渠道"] else "")
             + f"，SOP 进入 {f['SOP进入人次']} 人次，发送 {f['发送条数']} 条"
             + (f"（推迟 {f['推迟']} 条）" if f["推迟"] else "") + "。"]
    if f["客户回复率"] is not None:
        parts.append(f"客户回复率 {f['客户回复率']}。")
    if f["支付订单"]:
        parts.append(f"支付订单 {f['支付订单']} 笔，GMV {f['GMV']:g} 元，其中 SOP 归因 {f['SOP归因GMV']:g} 元。")
    missed = [g for g in f["目标"] if g["状态"] == "未达成"]
    met = [g for g in f["目标"] if g["状态"] == "达成"]
    if f["目标"]:
        parts.append(f"{len(f['目标'])} 项目标中达成 {len(met)} 项" + (
            "，未达成：" + "；".join(f"{g['指标']}（{_scope(g['范围'])}）{g['实际']}，目标 {g['目标']}" for g in missed[:4])
            if missed else "，全部达成") + "。")
    if f["异常"]:
        parts.append("异常：" + "；".join(f"{a['指标']}（{_scope(a['范围'])}）{a['实际']}，较 7 日均值 {a['7日均值']} 变化 "
                                        f"{a['变化']}" for a in f["异常"][:3]) + "。")
    if f["转人工"]:
        parts.append(f"转人工 {f['转人工']} 次" + (f"，SLA 达成率 {f['转人工SLA达成率']}" if f["转人工SLA达成率"] else "")
                     + "。")
    if f["内容缺口"]:
        parts.append("客户常问但答不上的问题：" + "、".join(f"「{g['问题']}」{g['次数']} 次" for g in f["内容缺口"]) + "。")
    if f["建议"]:
        parts.append("建议优先处理：" + "；".join(f["建议"][:2]) + "。")
    if f["需关注会话"]:
        parts.append(f"另有 {f['需关注会话']} 个会话需要人工查看。")
    return Narrative(text="".join(parts), source="offline", checked=True)


def _scope(scope: str) -> str:
    return "全店" if scope == "shop" else scope


def allowed_numbers(facts: dict[str, Any]) -> set[float]:
    """Every number the facts state, as written there (percentages as their number)."""
    found: set[float] = set()

    def walk(value: Any) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            found.add(round(float(value), 2))
        elif isinstance(value, str):
            found.update(round(v, 2) for v, _, _ in numbers(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(facts)
    walk(json.dumps(facts, ensure_ascii=False))
    return found


def unbacked_numbers(text: str, facts: dict[str, Any]) -> list[float]:
    """Numbers in ``text`` that the facts do not state (small counts of listed items and 7 (days) aside)."""
    allowed = allowed_numbers(facts) | {7.0, 14.0, float(len(facts.get("目标", []))), float(len(facts.get("建议", [])))}
    allowed |= {float(n) for n in range(0, 4)}  # "两项", "一条": the counts of the lists the text walks through
    bad = []
    for value, _, _ in numbers(text):
        if not any(abs(value - a) <= max(0.051, abs(a) * 0.001) for a in allowed):
            bad.append(value)
    return bad


def write(report: Report, writer: Writer | None) -> Narrative:
    """The model's summary when a writer is configured and every number in it checks; otherwise the offline one."""
    fallback = offline(report)
    if writer is None:
        return fallback
    facts = facts_of(report)
    try:
        out = writer.ask(NarrativeOut, SYSTEM.format(facts=json.dumps(facts, ensure_ascii=False)), "请写今天的复盘摘要。")
    except BrainUnavailable as exc:
        return fallback.model_copy(update={"note": f"模型不可用，已用离线摘要：{str(exc)[:120]}"})
    bad = unbacked_numbers(out.text, facts)
    if bad:
        shown = "、".join(f"{v:g}" for v in bad[:5])
        return fallback.model_copy(update={"note": f"模型摘要中的数字与事实不符（{shown}），已用离线摘要"})
    return Narrative(text=out.text.strip(), source="llm", checked=True)
