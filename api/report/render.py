"""Views of one :class:`Report`: JSON, a Chinese Markdown report, a self-contained HTML page with inline SVG
charts, and the short WeCom markdown summary sent to operators.

Markdown and HTML are two renderings of one document model (sections of blocks built here), so they always
carry the same sections and numbers. All text from the report is treated as untrusted: the HTML goes
through jinja2 with autoescape, Markdown text is backslash-escaped, and the WeCom summary swaps markup
characters for their full-width forms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from api.report import charts
from api.report.goals import METRICS
from api.report.schema import Report, SopFunnel, Trend

WECOM_MARKDOWN_MAX_BYTES = 2048  # message/send markdown.content: "最长不超过2048个字节，必须是utf8编码"
DASH = "—"

Unit = Literal["rate", "count", "minutes", "yuan"]
Tone = Literal["good", "bad", "muted"] | None

# --------------------------------------------------------------------------------------------- formatting


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pct(value: float | None) -> str:
    """A rate in [0, 1] as a percentage with one decimal: 0.28 → "28.0%"; None → "—"."""
    return f"{value * 100:.1f}%" if _finite(value) else DASH


def num(value: float | None) -> str:
    """A count with thousands separators; a non-integral value keeps one decimal."""
    if not _finite(value):
        return DASH
    assert value is not None
    return f"{round(value):,}" if abs(value - round(value)) < 1e-9 else f"{value:,.1f}"


def plain(value: float | None) -> str:
    """A number of unknown unit: up to two decimals, no trailing zeros."""
    if not _finite(value):
        return DASH
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def local_time(at: datetime, timezone: str) -> datetime:
    """``at`` in the shop's timezone (naive datetimes and unknown zones are shown as given)."""
    if at.tzinfo is None:
        return at
    try:
        return at.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return at


def minutes(value: float | None) -> str:
    return f"{value:.1f} 分钟" if _finite(value) else DASH


def seconds(value: float | None) -> str:
    return f"{value:.1f} 秒" if _finite(value) else DASH


def yuan(value: float | None) -> str:
    return f"¥{value:,.2f}" if _finite(value) else DASH


def change(value: float | None) -> str:
    """A relative change as a signed percentage: -0.4 → "-40.0%"."""
    return f"{value * 100:+.1f}%" if _finite(value) else DASH


def value_of(value: float | None, unit: Unit) -> str:
    return {"rate": pct, "count": num, "minutes": minutes, "yuan": yuan}[unit](value)


def _op(op: str) -> str:
    return {">=": "≥", "<=": "≤"}.get(op, op)


def _counts(data: dict[str, int], names: dict[str, str] | None = None) -> str:
    names = names or {}
    items = sorted(data.items(), key=lambda kv: (-kv[1], kv[0]))
    return "、".join(f"{names.get(k, k)} {num(v)}" for k, v in items) if items else DASH


GOAL_STATUS = {"met": "达成", "missed": "未达成", "no_data": "无数据"}
GOAL_TONE: dict[str, Tone] = {"met": "good", "missed": "bad", "no_data": "muted"}
EXECUTORS = {"ai": "AI", "employee": "员工", "human": "员工"}
TOUCHPOINTS = {"private": "私聊", "group": "社群", "moments": "朋友圈"}

# --------------------------------------------------------------------------------------------- document model


@dataclass
class Para:
    kind: ClassVar[str] = "para"
    text: str
    tone: Tone = None


@dataclass
class Stats:
    """Labelled values: headline numbers as tiles, or (``compact``) breakdowns and details as a list."""

    kind: ClassVar[str] = "stats"
    items: list[tuple[str, str]]
    compact: bool = False


@dataclass
class Table:
    kind: ClassVar[str] = "table"
    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()  # right-aligned columns
    tones: list[Tone] = field(default_factory=list)  # one per row, or empty

    def tone(self, i: int) -> Tone:
        return self.tones[i] if i < len(self.tones) else None


@dataclass
class Excerpt:
    kind: ClassVar[str] = "excerpt"
    lines: list[tuple[str, str, str, str]]  # (when, who, text, "in" or "out")


@dataclass
class Link:
    kind: ClassVar[str] = "link"
    label: str
    href: str | None  # None when the target was not a safe link; the text is shown instead
    text: str


@dataclass
class Code:
    kind: ClassVar[str] = "code"
    text: str
    lang: str


@dataclass
class Chart:
    """An SVG chart in HTML; Markdown shows ``table`` in its place (or nothing when another block has the numbers)."""

    kind: ClassVar[str] = "chart"
    svg: str
    table: Table | None = None


Block = Para | Stats | Table | Excerpt | Link | Code | Chart


@dataclass
class Group:
    kind: ClassVar[str] = "group"
    title: str
    blocks: list[Block]
    tone: Tone = None


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block | Group]


def _empty(text: str = "暂无") -> Para:
    return Para(text, "muted")


def safe_href(link: str) -> str | None:
    """``link`` if it is a relative path or an http(s) URL, else None (no ``javascript:``, ``data:``…)."""
    link = link.strip()
    if not link or any(c in link for c in "\r\n\t\\") or link.startswith("//"):
        return None
    try:
        parts = urlsplit(link)
    except ValueError:
        return None
    if parts.scheme == "":
        return link if ":" not in link.split("/", 1)[0] else None
    return link if parts.scheme in ("http", "https") and parts.netloc else None


# --------------------------------------------------------------------------------------------- sections


class _Builder:
    def __init__(self, report: Report) -> None:
        self.r = report
        self.m = report.metrics
        self.names = {f.sop_id: f.name for f in self.m.funnels}

    def scope(self, scope: str) -> str:
        if scope == "shop":
            return "全店"
        return f"{self.names[scope]}（{scope}）" if scope in self.names else scope

    def short_scope(self, scope: str) -> str:
        return "全店" if scope == "shop" else self.names.get(scope) or scope

    def sop(self, sop_id: str | None) -> str:
        return DASH if sop_id is None else (self.names.get(sop_id) or sop_id)

    def unit_of(self, metric: str) -> Unit | None:
        """The unit of a metric, from the metric registry (api/report/goals.py)."""
        definition = METRICS.get(metric)
        return definition.unit if definition is not None else None

    def target_of(self, metric: str) -> float | None:
        goals = [g for g in self.r.goals if g.metric == metric]
        goals.sort(key=lambda g: g.scope != "shop")
        return goals[0].target if goals else None

    def sections(self) -> list[Section]:
        return [
            Section("overview", "概览", self.overview()),
            Section("goals", "目标达成", self.goals()),
            Section("anomalies", "异常", self.anomalies()),
            Section("trends", "趋势", self.trends()),
            Section("funnels", "SOP 漏斗", self.funnels()),
            Section("sends", "发送与任务", self.sends()),
            Section("replies", "回复与问卷", self.replies()),
            Section("coupons", "优惠券与归因", self.coupons()),
            Section("service", "投诉与转人工", self.service()),
            Section("groups", "社群打卡", self.groups()),
            Section("flagged", "需关注的会话", self.flagged()),
            Section("gaps", "内容缺口", self.gaps()),
            Section("suggestions", "优化建议", self.suggestions()),
            Section("comparisons", "版本对比", self.comparisons()),
        ]

    def overview(self) -> list[Block | Group]:
        m, n = self.m, self.r.narrative
        blocks: list[Block | Group] = [Para(n.text) if n.text.strip() else _empty("今日暂无叙述")]
        if n.source == "llm":
            blocks.append(Para("叙述由模型撰写，文中数字已逐一核对。", "muted") if n.checked
                          else Para("注意：模型叙述中的数字未能全部核对，请以下方数据为准。", "bad"))
        else:
            blocks.append(Para("叙述由离线模板生成。", "muted"))
        if n.note:
            blocks.append(Para(f"说明：{n.note}", "muted"))
        blocks.append(Stats([
            ("客户总数", num(m.customers_total)), ("新增客户", num(m.new_customers)),
            ("进入 SOP", num(m.enrolments)), ("发送消息", num(m.sends.total)),
            ("回复率", pct(m.replies.reply_rate)), ("任务完成率", pct(m.tasks.completion_rate)),
            ("归因 GMV", yuan(m.attribution.attributed_gmv)), ("SLA 达成率", pct(m.service.sla_rate)),
            ("退订", num(m.unsubscribes)), ("删除好友", num(m.deletions)),
        ]))
        if m.new_by_channel or m.new_by_owner:
            blocks.append(Stats([("新增来源渠道", _counts(m.new_by_channel)),
                                 ("新增归属员工", _counts(m.new_by_owner))], compact=True))
        return blocks

    def goals(self) -> list[Block | Group]:
        if not self.r.goals:
            return [_empty("未设置目标")]
        rows, tones = [], []
        for g in self.r.goals:
            rows.append([g.label, self.scope(g.scope), f"{_op(g.op)} {value_of(g.target, g.unit)}",
                         value_of(g.actual, g.unit), value_of(g.baseline, g.unit), GOAL_STATUS[g.status]])
            tones.append(GOAL_TONE[g.status])
        return [Table(["指标", "范围", "目标", "实际", "7日基线", "状态"], rows, frozenset({2, 3, 4}), tones)]

    def anomalies(self) -> list[Block | Group]:
        if not self.r.anomalies:
            return [_empty("今日无异常")]
        rows, tones = [], []
        for a in sorted(self.r.anomalies, key=lambda a: -abs(a.change) if _finite(a.change) else 0):
            unit = self.unit_of(a.metric)
            fmt = (lambda v, u=unit: value_of(v, u)) if unit else plain
            rows.append([a.label, self.scope(a.scope), fmt(a.actual), fmt(a.baseline), change(a.change),
                         num(a.volume), a.rule])
            tones.append("bad")
        return [Table(["指标", "范围", "实际", "基线", "变化", "样本量", "规则"], rows,
                      frozenset({2, 3, 4, 5}), tones)]

    def trends(self) -> list[Block | Group]:
        if not self.r.trends:
            return [_empty("暂无趋势数据")]
        blocks: list[Block | Group] = []
        rows = []
        for t in self.r.trends:
            present = [p.value for p in t.points if _finite(p.value)]
            target = self.target_of(t.metric)
            last = next((p.value for p in reversed(t.points) if _finite(p.value)), None)
            rows.append([t.label, sparkline(t), value_of(last, t.unit),
                         value_of(min(present), t.unit) if present else DASH,
                         value_of(max(present), t.unit) if present else DASH,
                         value_of(target, t.unit) if target is not None else DASH])
        blocks.append(Table(["指标", "走势", "最新", "最低", "最高", "目标"], rows, frozenset({2, 3, 4, 5})))
        seen: dict[str, int] = {}
        for t in self.r.trends:
            seen[t.metric] = seen.get(t.metric, 0) + 1
            name = t.metric if seen[t.metric] == 1 else f"{t.metric}#{seen[t.metric]}"
            blocks.append(Group(t.label, [Chart(charts.trend_chart(t, self.target_of(t.metric), chart=f"trend:{name}"))]))
        return blocks

    def funnels(self) -> list[Block | Group]:
        if not self.m.funnels:
            return [_empty("今日没有运行中的 SOP")]
        ids = [f.sop_id for f in self.m.funnels]
        out: list[Block | Group] = []
        for f in self.m.funnels:
            chart_name = f"funnel:{f.sop_id}" if ids.count(f.sop_id) == 1 else f"funnel:{f.sop_id}@v{f.version}"
            blocks: list[Block] = [
                Stats([("入组", num(f.enrolled)), ("进行中", num(f.active)), ("完成", num(f.completed)),
                       ("退出", num(f.exited)), ("完成率", pct(f.completion_rate))]),
                Stats([("退出原因", _counts(f.exit_reasons))], compact=True)]
            blocks += [Chart(charts.funnel_chart(f, chart=chart_name)), _step_table(f)]
            out.append(Group(f"{f.name}（{f.sop_id} v{f.version}）", blocks))
        return out

    def sends(self) -> list[Block | Group]:
        s, t = self.m.sends, self.m.tasks
        blocks: list[Block | Group] = [
            Stats([("发送总数", num(s.total)), ("营销类", num(s.marketing)), ("延后", num(s.deferred)),
                   ("取消", num(s.cancelled))]),
            Stats([("按触点", _counts(s.by_touchpoint, TOUCHPOINTS)), ("按执行方", _counts(s.by_executor, EXECUTORS)),
                   ("延后原因", _counts(s.deferrals_by_reason)), ("取消原因", _counts(s.cancellations_by_reason))],
                  compact=True)]
        rows = [[charts.MODES.get(k, k), num(v)] for k, v in sorted(s.by_mode.items(), key=lambda kv: (-kv[1], kv[0]))]
        table = Table(["发送方式", "发送量"], rows, frozenset({1})) if rows else None
        blocks.append(Group("按发送方式", [Chart(charts.sends_by_mode_chart(s.by_mode), table)]))
        blocks.append(Group("员工任务", [
            Stats([("创建", num(t.created)), ("完成", num(t.done)), ("逾期未完成", num(t.overdue)),
                   ("完成率", pct(t.completion_rate))]),
            Stats([("按类型", _counts(t.by_kind, charts.MODES))], compact=True)]))
        return blocks

    def replies(self) -> list[Block | Group]:
        r, c, llm = self.m.replies, self.m.conversations, self.m.llm
        blocks: list[Block | Group] = [
            Stats([("触达客户", num(r.touched)), ("24 小时内回复", num(r.replied)), ("回复率", pct(r.reply_rate)),
                   ("首次回复中位时长", minutes(r.first_reply_minutes_p50)),
                   ("客户来信", num(r.inbound_messages)), ("来信客户", num(r.customers_writing)),
                   ("我方回复中位时长", seconds(r.bot_reply_seconds_p50))]),
            Group("会话质量", [Stats([
                ("对话轮次", num(c.turns)), ("无依据未答", num(c.unanswered)), ("低置信", num(c.low_confidence)),
                ("转人工", num(c.handed_off)), ("模型作答", num(llm.turns_by_model)), ("离线兜底", num(llm.fallbacks)),
                ("模型出错", num(llm.errors)), ("护栏拦截", num(llm.rejected)), ("模型调用", num(llm.calls)),
                ("Token", num(llm.tokens))])]),
        ]
        if self.m.questions:
            rows = [[self.sop(q.sop_id), q.step_id, q.slot, num(q.asked), num(q.answered), pct(q.completion)]
                    for q in self.m.questions]
            blocks.append(Group("问卷完成", [Table(["SOP", "步骤", "字段", "提问", "回答", "完成率"], rows,
                                                    frozenset({3, 4, 5}))]))
        else:
            blocks.append(Group("问卷完成", [_empty("今日没有问卷提问")]))
        return blocks

    def coupons(self) -> list[Block | Group]:
        c, a = self.m.coupons, self.m.attribution
        share = a.attributed_gmv / a.gmv if a.gmv else None
        blocks: list[Block | Group] = [
            Stats([("发放", num(c.issued)), ("核销", num(c.redeemed)), ("核销率", pct(c.redemption_rate))]),
            Stats([("按活动", _counts(c.by_campaign))], compact=True),
            Para(f"归因规则：{a.rule}"),
            Stats([("全部订单", num(a.orders)), ("全部 GMV", yuan(a.gmv)), ("归因订单", num(a.attributed_orders)),
                   ("归因 GMV", yuan(a.attributed_gmv)), ("归因 GMV 占比", pct(share))]),
        ]
        if a.by_sop:
            rows = [[self.sop(k), num(v.orders), yuan(v.gmv)]
                    for k, v in sorted(a.by_sop.items(), key=lambda kv: (-kv[1].gmv, kv[0]))]
            blocks.append(Table(["SOP", "归因订单", "归因 GMV"], rows, frozenset({1, 2})))
        return blocks

    def service(self) -> list[Block | Group]:
        s = self.m.service
        return [Stats([("投诉", num(s.complaints)), ("转人工", num(s.handoffs)), ("SLA", minutes(s.sla_minutes)),
                       ("已处理", num(s.handled)), ("SLA 内处理", num(s.within_sla)), ("超时", num(s.breached)),
                       ("人工接手中位时长", minutes(s.time_to_human_minutes_p50)), ("SLA 达成率", pct(s.sla_rate))])]

    def groups(self) -> list[Block | Group]:
        if not self.m.groups:
            return [_empty("今日没有社群打卡数据")]
        rows = [[g.name, g.group, num(g.members), num(g.checkins), pct(g.checkin_rate)] for g in self.m.groups]
        return [Table(["社群", "群 ID", "成员", "打卡", "打卡率"], rows, frozenset({2, 3, 4}))]

    def flagged(self) -> list[Block | Group]:
        if not self.r.flagged:
            return [_empty("今日没有需要关注的会话")]
        out: list[Block | Group] = []
        for f in self.r.flagged:
            tz = self.m.timezone
            lines = [(f"{local_time(ln.at, tz):%m-%d %H:%M}", "客户" if ln.direction == "in" else "我方", ln.text, ln.direction)
                     for ln in f.excerpt]
            blocks: list[Block] = [Para("原因：" + ("、".join(f.reasons) if f.reasons else DASH))]
            if lines:
                blocks.append(Excerpt(lines))
            blocks.append(Link("查看客户详情", safe_href(f.link), f.link))
            out.append(Group(f"{f.name}（{f.customer_id}）", blocks, "bad"))
        return out

    def gaps(self) -> list[Block | Group]:
        if not self.r.gaps:
            return [_empty("今日没有未能回答的问题")]
        out: list[Block | Group] = []
        for g in self.r.gaps:
            blocks: list[Block] = [Para(f"{num(g.count)} 次提问，来自 {num(g.customers)} 位客户。")]
            if g.questions:
                blocks.append(Table(["客户原话"], [[q] for q in g.questions]))
            title = g.proposed_faq.get("title", "")
            text = g.proposed_faq.get("text", "")
            blocks.append(Stats([("建议 FAQ 标题", title or DASH), ("建议 FAQ 内容", text or "（待运营填写）")],
                                compact=True))
            out.append(Group(g.label, blocks))
        return out

    def suggestions(self) -> list[Block | Group]:
        if not self.r.suggestions:
            return [_empty("今日没有优化建议")]
        out: list[Block | Group] = []
        for s in self.r.suggestions:
            where = DASH if s.sop_id is None else self.sop(s.sop_id) + (f" · 步骤 {s.step_id}" if s.step_id else "")
            if s.proposed_yaml is None and s.diff is None:
                check = "无改动草案"
            else:
                check = "已通过 sopagent sop validate 校验" if s.validated else "未通过校验，需人工修改后再发布"
            blocks: list[Block] = [Para(f"依据：{s.evidence}"),
                                   Stats([("编号", s.id), ("适用", where), ("校验", check)], compact=True)]
            if s.diff:
                blocks.append(Code(s.diff, "diff"))
            out.append(Group(s.title, blocks, "good" if s.validated else None))
        return out

    def comparisons(self) -> list[Block | Group]:
        if not self.r.comparisons:
            return [_empty("窗口内没有新发布的 SOP 版本")]
        rows = []
        for c in self.r.comparisons:
            for label, version, s in (("发布前", c.version_before, c.before), ("发布后", c.version_after, c.after)):
                rows.append([self.sop(c.sop_id), f"{label} v{version}", f"{c.published_on:%Y-%m-%d}", num(s.days),
                             num(s.enrolled), num(s.completed), num(s.exited), pct(s.completion_rate), num(s.sent),
                             num(s.answered), pct(s.answer_rate)])
        return [Table(["SOP", "版本", "发布日", "天数", "入组", "完成", "退出", "完成率", "发送", "回答", "回答率"],
                      rows, frozenset(range(3, 11)))]


def _step_table(f: SopFunnel) -> Table:
    rows = [[s.step_id, charts.STEP_KINDS.get(s.kind, s.kind), num(s.reached), num(s.sent),
             DASH if s.answered is None else num(s.answered), num(s.dropped), pct(s.drop_off)] for s in f.steps]
    if not rows:
        rows = [["暂无步骤数据", "", "", "", "", "", ""]]
    return Table(["步骤", "类型", "到达", "已发送", "已回答", "流失", "流失率"], rows, frozenset({2, 3, 4, 5, 6}))


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(trend: Trend) -> str:
    """The trend as block characters; a missing day is a middle dot."""
    present = [p.value for p in trend.points if _finite(p.value)]
    if not present:
        return DASH
    low, high = min(present), max(present)
    out = []
    for p in trend.points:
        if not _finite(p.value):
            out.append("·")
        elif high == low:
            out.append(SPARKS[3])
        else:
            assert p.value is not None
            out.append(SPARKS[round((p.value - low) / (high - low) * (len(SPARKS) - 1))])
    return "".join(out)


# --------------------------------------------------------------------------------------------- JSON


def render_json(report: Report) -> str:
    """The report as pretty JSON; non-ASCII text is written as is (UTF-8), not as ``\\u`` escapes."""
    return report.model_dump_json(indent=2)


# --------------------------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~!])")


def md_text(text: str) -> str:
    """Untrusted text on one Markdown line: markup characters backslash-escaped, line breaks as " / "."""
    text = re.sub(r"\s*(?:\r\n|\r|\n)+\s*", " / ", text.strip())
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_href(href: str) -> str:
    return quote(href, safe="/:?#&=%+-._~!$',;@")


def _md_table(t: Table) -> list[str]:
    align = ["---:" if i in t.numeric else "---" for i in range(len(t.headers))]
    out = ["| " + " | ".join(md_text(h) for h in t.headers) + " |", "| " + " | ".join(align) + " |"]
    for row in t.rows:
        out.append("| " + " | ".join(md_text(c) if c else " " for c in row) + " |")
    return out


def _md_block(b: Block) -> list[str]:
    if isinstance(b, Para):
        paras = [md_text(p) for p in b.text.splitlines() if p.strip()]
        if b.tone == "muted":
            paras = [f"_{p}_" for p in paras]
        elif b.tone == "bad":
            paras = [f"**{p}**" for p in paras]
        return [line for p in paras for line in (p, "")][:-1] if paras else []
    if isinstance(b, Stats):
        return [f"- {md_text(k)}：{md_text(v)}" for k, v in b.items]
    if isinstance(b, Table):
        return _md_table(b)
    if isinstance(b, Excerpt):
        return [line for when, who, text, _ in b.lines for line in (f"> `{when}` **{who}**：{md_text(text)}", ">")][:-1]
    if isinstance(b, Link):
        return [f"[{md_text(b.label)}]({md_href(b.href)})" if b.href else f"{md_text(b.label)}：{md_text(b.text)}"]
    if isinstance(b, Chart):
        return _md_table(b.table) if b.table else []
    if isinstance(b, Code):
        fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", b.text)), default=0) + 1)
        return [f"{fence}{b.lang}", *b.text.rstrip("\n").splitlines(), fence]
    return []


def render_markdown(report: Report) -> str:
    """The report as Chinese Markdown (CommonMark + GFM tables); all report text is escaped."""
    m = report.metrics
    out = [f"# {md_text(report.shop)} 每日复盘 · {report.day:%Y-%m-%d}", "",
           f"_生成于 {local_time(report.generated_at, m.timezone):%Y-%m-%d %H:%M}（{md_text(m.timezone)}）_", ""]
    for section in _Builder(report).sections():
        out += [f"## {section.title}", ""]
        for item in section.blocks:
            if isinstance(item, Group):
                body = [line for b in item.blocks if (lines := _md_block(b)) for line in (*lines, "")]
                out += [f"### {md_text(item.title)}", "", *body] if body else []
            else:
                lines = _md_block(item)
                out += [*lines, ""] if lines else []
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------- HTML

_ENV = Environment(loader=PackageLoader("api.report", "templates"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)


def render_html(report: Report) -> str:
    """One self-contained UTF-8 HTML page: inline CSS and inline SVG charts, nothing loaded from anywhere."""
    sections = _Builder(report).sections()
    return _ENV.get_template("report.html.j2").render(
        report=report, sections=sections,
        generated=f"{local_time(report.generated_at, report.metrics.timezone):%Y-%m-%d %H:%M}",
        day=f"{report.day:%Y-%m-%d}", svg=lambda chart: Markup(chart.svg))  # SVG built and escaped in charts.py


# --------------------------------------------------------------------------------------------- WeCom summary

_WECOM_SWAP = str.maketrans({"<": "＜", ">": "＞", "*": "＊", "[": "［", "]": "］", "`": "｀", "#": "＃",
                             "\r": " ", "\n": " "})


def wecom_text(text: str, limit: int = 40) -> str:
    """Text for a WeCom markdown line: markup characters become full-width look-alikes; clipped to ``limit``."""
    text = " ".join(text.translate(_WECOM_SWAP).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utf8_clip(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``max_bytes``, cut on a character boundary."""
    data = text.encode("utf-8")
    return text if len(data) <= max_bytes else data[:max_bytes].decode("utf-8", errors="ignore")


def _size(lines: Iterable[str]) -> int:
    return len("\n".join(lines).encode("utf-8"))


def operator_summary(report: Report, link: str | None = None, max_bytes: int = WECOM_MARKDOWN_MAX_BYTES) -> str:
    """A WeCom app-message markdown summary (``msgtype: markdown``) within ``max_bytes`` of UTF-8.

    Uses only WeCom's markdown subset: headings, bold, links, quotes and ``<font color="info|comment|warning">``.
    Lines are dropped whole (with an "另有 N 项" note) before anything is cut, and the link is always kept.
    """
    m = report.metrics
    b = _Builder(report)
    head = [f"### {wecom_text(report.shop, 30)} 每日复盘 {report.day:%Y-%m-%d}",
            f"新增客户 **{num(m.new_customers)}**　发送 **{num(m.sends.total)}**　"
            f"回复率 **{pct(m.replies.reply_rate)}**",
            f"任务完成率 **{pct(m.tasks.completion_rate)}**　归因 GMV **{yuan(m.attribution.attributed_gmv)}**　"
            f"SLA 超时 **{num(m.service.breached)}**"]
    missed = [g for g in report.goals if g.status == "missed"]
    goal_lines = [f'> <font color="warning">{wecom_text(g.label)}</font>（{wecom_text(b.short_scope(g.scope), 24)}）'
                  f"实际 {value_of(g.actual, g.unit)}，目标 {_op(g.op)} {value_of(g.target, g.unit)}" for g in missed]
    top = sorted(report.anomalies, key=lambda a: -abs(a.change) if _finite(a.change) else 0)
    anomaly_lines = [f"> {wecom_text(a.label)}（{wecom_text(b.short_scope(a.scope), 24)}）较基线 "
                     f'<font color="warning">{change(a.change)}</font>' for a in top]
    tail = [f"需关注会话 **{len(report.flagged)}** 个　优化建议 **{len(report.suggestions)}** 条　"
            f"内容缺口 **{len(report.gaps)}** 个"]
    href = safe_href(link) if link else None
    if href and len(href.encode("utf-8")) <= max_bytes // 2:
        tail.append(f"[查看完整报告]({href})")

    lines = list(head)
    budget = max_bytes - _size(tail) - 1  # the newline joining head/lists to tail

    def add(title: str, items: list[str], cap: int) -> None:
        if not items:
            return
        shown: list[str] = []
        for i, line in enumerate(items[:cap]):
            rest = len(items) - i - 1
            note = [f'<font color="comment">另有 {rest} 项未列出</font>'] if rest else []
            if _size([*lines, title, *shown, line, *note]) > budget:
                break
            shown.append(line)
        rest = len(items) - len(shown)
        note = [f'<font color="comment">另有 {rest} 项未列出</font>'] if rest else []
        block = [title, *shown, *note]
        if _size([*lines, *block]) <= budget:
            lines.extend(block)

    add(f"**未达成目标 {len(missed)} 项**", goal_lines, 5)
    add(f"**异常 {len(top)} 项**", anomaly_lines, 3)
    text = "\n".join([*lines, *tail])
    return utf8_clip(text, max_bytes)
