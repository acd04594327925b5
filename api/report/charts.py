"""Inline SVG charts for the daily report: pure functions from report data to an SVG string.

Every chart's root ``<svg>`` carries ``data-chart="<kind>:<name>"`` and draws without JavaScript, fonts or
anything from the network. Coordinates are written with one decimal so the output is byte-for-byte
deterministic. All text placed in a chart is escaped here; callers may insert the result verbatim.
No ``xmlns`` attribute is written: inline SVG in HTML does not need it, and the page stays free of URLs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape

from api.report.schema import SopFunnel, Trend

WIDTH = 480  # user units; pages scale charts to their column (≈1.3× on a desktop, ≈0.7× on a phone)
FONT = 13
EMPTY_TEXT = "暂无数据"

# Series colours (chromatic, so a drawn chart is distinguishable from text alone).
REACHED = "#94a3b8"
SENT = "#2563eb"
ANSWERED = "#16a34a"
LINE = "#2563eb"
TARGET = "#dc2626"
BAR = "#7c3aed"
INK = "#334155"
MUTED = "#64748b"
GRID = "#e2e8f0"

STEP_KINDS = {"message": "消息", "ask": "提问", "group_invite": "邀请入群", "coupon": "发券", "tag": "打标签",
              "wait": "等待", "branch": "分支", "handoff": "转人工", "chat": "对话", "end": "结束"}
MODES = {"kf": "微信客服", "welcome": "欢迎语", "member_task": "员工任务", "group_task": "群发任务",
         "moment_task": "朋友圈任务"}


def _n(value: float) -> str:
    """A coordinate with one decimal, without a trailing ``.0``."""
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def _attr(text: str) -> str:
    return escape(text, quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open(chart: str, height: float, title: str, extra_class: str = "", width: int = WIDTH) -> str:
    cls = "chart" + (f" {extra_class}" if extra_class else "")
    return (f'<svg class="{cls}" data-chart="{_attr(chart)}" viewBox="0 0 {width} {_n(height)}" '
            f'width="{width}" height="{_n(height)}" role="img" aria-label="{_attr(title)}" '
            f'font-size="{FONT}" preserveAspectRatio="xMinYMin meet">'
            f"<title>{escape(title)}</title>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", fill: str = INK, size: int | None = None,
          weight: str | None = None, halo: bool = False) -> str:
    extra = (f' font-size="{size}"' if size else "") + (f' font-weight="{weight}"' if weight else "")
    if halo:  # a white outline keeps a label readable where it crosses the line
        extra += ' stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'
    return (f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(text, quote=False)}</text>")


def _rect(x: float, y: float, w: float, h: float, fill: str) -> str:
    return f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="2" fill="{fill}"/>'


def _legend(items: Sequence[tuple[str, str]], y: float, x: float = 0.0) -> str:
    parts = []
    for colour, label in items:
        parts.append(_rect(x, y - 10, 12, 12, colour))
        parts.append(_text(x + 17, y, _clip(label, 16), fill=INK))
        x += 17 + FONT * len(label) + 18
    return "".join(parts)


def placeholder(chart: str, title: str, message: str = EMPTY_TEXT) -> str:
    """The chart slot for data that is absent: a small dashed frame with a centred note."""
    width, height = 320, 64
    return (_open(chart, height, title, "chart-empty", width)
            + f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" rx="6" fill="#f8fafc" '
              f'stroke="#cbd5e1" stroke-width="1.5" stroke-dasharray="6 4"/>'
            + _text(width / 2, height / 2 + 6, message, anchor="middle", fill=MUTED, size=16)
            + "</svg>")


def nice_ceiling(value: float, ticks: int = 4) -> tuple[float, float]:
    """The axis top (≥ value) and tick step for ``ticks`` intervals, on a 1-2-2.5-5 scale; never zero."""
    if not math.isfinite(value) or value <= 0:
        return float(ticks), 1.0
    raw = value / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12)
    return step * math.ceil(value / step - 1e-9), step


def tick_label(value: float, unit: str) -> str:
    """An axis label: rates are already in percent here."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    text = "0" if text == "-0" else text
    if unit == "rate":
        return text + "%"
    if unit == "yuan":
        return "¥" + text
    return text


def value_label(value: float, unit: str) -> str:
    """A data label: rates (in percent here) and minutes keep one decimal, counts and yuan are whole."""
    if unit == "rate":
        return f"{value:.1f}%"
    if unit == "minutes":
        return f"{value:.1f}"
    if unit == "yuan":
        return f"¥{value:,.0f}"
    return f"{value:,.1f}".removesuffix(".0")


# --------------------------------------------------------------------------------------------- funnel


def funnel_chart(funnel: SopFunnel, chart: str | None = None) -> str:
    """Horizontal bars per step of one SOP: reached, sent and (for ask steps) answered."""
    chart = chart or f"funnel:{funnel.sop_id}"
    title = f"{funnel.name} v{funnel.version} 步骤漏斗"
    if not funnel.steps:
        return placeholder(chart, title)
    label_w, value_w, bar_h, gap, row_gap, top = 128, 44, 11, 2, 14, 34
    plot_w = WIDTH - label_w - value_w
    vmax = max(max(s.reached, s.sent, s.answered or 0) for s in funnel.steps)
    scale = plot_w / vmax if vmax > 0 else 0.0
    row_h = 3 * bar_h + 2 * gap
    height = top + len(funnel.steps) * (row_h + row_gap) + 4
    parts = [_open(chart, height, title),
             _legend([(REACHED, "到达"), (SENT, "已发送"), (ANSWERED, "已回答")], 16)]
    y = top
    for step in funnel.steps:
        kind = STEP_KINDS.get(step.kind, step.kind)
        parts.append(_text(0, y + bar_h + 4, _clip(step.step_id, 15), weight="600"))
        parts.append(_text(0, y + 2 * bar_h + gap + 12, kind, fill=MUTED, size=12))
        series = [(REACHED, step.reached), (SENT, step.sent)]
        if step.answered is not None:
            series.append((ANSWERED, step.answered))
        for i, (colour, value) in enumerate(series):
            by = y + i * (bar_h + gap)
            w = value * scale
            parts.append(f'<rect x="{label_w}" y="{_n(by)}" width="{_n(plot_w)}" height="{bar_h}" '
                         f'fill="#f1f5f9"/>')
            if w > 0:
                parts.append(_rect(label_w, by, max(w, 2.0), bar_h, colour))
            parts.append(_text(label_w + plot_w + 6, by + bar_h - 1, str(value), fill=INK, size=12))
        y += row_h + row_gap
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------- trend


def _day_label(day: date) -> str:
    return f"{day.month:02d}-{day.day:02d}"


def trend_chart(trend: Trend, target: float | None = None, chart: str | None = None) -> str:
    """A line over the days of ``trend``; None values leave gaps; ``target`` draws a dashed line."""
    chart = chart or f"trend:{trend.metric}"
    title = f"{trend.label} 近 {len(trend.points)} 日趋势"
    scale_by = 100.0 if trend.unit == "rate" else 1.0
    values = [None if p.value is None else p.value * scale_by for p in trend.points]
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return placeholder(chart, title)
    goal = None if target is None or not math.isfinite(target) else target * scale_by
    left, right, top, bottom, height = 56, 22, 34, 34, 240
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    extremes = [*present, *([goal] if goal is not None else [])]
    high, low_value = max(extremes), min([0.0, *extremes])  # the axis starts at 0 unless a value is negative
    _, step = nice_ceiling(high - low_value)
    low = math.floor(low_value / step + 1e-9) * step
    ticks = 4 if high <= low else max(1, math.ceil((high - low) / step - 1e-9))
    span = ticks * step

    def y_of(v: float) -> float:
        return top + plot_h - (v - low) / span * plot_h

    n = len(values)

    def x_of(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else i * plot_w / (n - 1))

    legend = [(LINE, trend.label)] + ([(TARGET, "目标")] if goal is not None else [])
    parts = [_open(chart, height, title), _legend(legend, 16)]
    for k in range(ticks + 1):
        v = low + k * step
        y = y_of(v)
        parts.append(f'<line x1="{left}" y1="{_n(y)}" x2="{WIDTH - right}" y2="{_n(y)}" stroke="{GRID}"/>')
        parts.append(_text(left - 6, y + 4, tick_label(v, trend.unit), anchor="end", fill=MUTED, size=12))
    every = 1 if n <= 7 else 2
    for i, point in enumerate(trend.points):
        if i % every == 0 or i == n - 1:
            if i == n - 2 and every > 1 and (n - 1) % every != 0:
                continue  # keep the last label clear of its neighbour
            parts.append(_text(x_of(i), height - 12, _day_label(point.day), anchor="middle", fill=MUTED, size=12))
    if goal is not None:
        gy = y_of(goal)
        parts.append(f'<line class="target" x1="{left}" y1="{_n(gy)}" x2="{WIDTH - right}" y2="{_n(gy)}" '
                     f'stroke="{TARGET}" stroke-width="1.5" stroke-dasharray="6 4"/>')
    segments: list[list[tuple[float, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x_of(i), y_of(v)))
    for seg in segments:
        if len(seg) > 1:
            pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in seg)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{LINE}" stroke-width="2.5" '
                         f'stroke-linejoin="round" stroke-linecap="round"/>')
    for i, v in enumerate(values):
        if v is not None and math.isfinite(v):
            parts.append(f'<circle cx="{_n(x_of(i))}" cy="{_n(y_of(v))}" r="3.5" fill="{LINE}"/>')
    last = next(((i, v) for i, v in reversed(list(enumerate(values))) if v is not None and math.isfinite(v)))
    parts.append(_text(min(x_of(last[0]), WIDTH - right - 2), y_of(last[1]) - 9,
                       value_label(last[1], trend.unit), anchor="end" if n > 1 else "middle",
                       fill=LINE, size=13, weight="600", halo=True))
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - right}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------- bars


def bar_chart(chart: str, title: str, data: dict[str, int], labels: dict[str, str] | None = None) -> str:
    """Horizontal bars, largest first; ``labels`` maps keys to display names."""
    items = sorted(((k, v) for k, v in data.items() if v is not None), key=lambda kv: (-kv[1], kv[0]))
    if not items:
        return placeholder(chart, title)
    labels = labels or {}
    label_w, value_w, bar_h, row_gap, top = 100, 48, 18, 10, 8
    plot_w = WIDTH - label_w - value_w
    vmax = max(v for _, v in items)
    scale = plot_w / vmax if vmax > 0 else 0.0
    height = top + len(items) * (bar_h + row_gap) + 2
    parts = [_open(chart, height, title)]
    y = top
    for key, value in items:
        parts.append(_text(0, y + bar_h - 4, _clip(labels.get(key, key), 7)))
        parts.append(f'<rect x="{label_w}" y="{_n(y)}" width="{_n(plot_w)}" height="{bar_h}" fill="#f1f5f9"/>')
        if value > 0:
            parts.append(_rect(label_w, y, max(value * scale, 2.0), bar_h, BAR))
        parts.append(_text(label_w + plot_w + 6, y + bar_h - 4, str(value)))
        y += bar_h + row_gap
    parts.append("</svg>")
    return "".join(parts)


def sends_by_mode_chart(by_mode: dict[str, int]) -> str:
    return bar_chart("sends:by_mode", "按发送方式的发送量", by_mode, MODES)
