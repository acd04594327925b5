"""What needs a human: flagged conversations, content gaps (unanswered questions clustered by meaning), SOP version
comparisons, and suggestions — each tied to its evidence and, where an SOP edit fits, a proposed YAML change that
passes the validator, shown as a diff."""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from agent.tables import InboundEvent, Message
from api.report.metrics import COMPLAINT_INTENTS, day_window, rate
from api.report.schema import (
    Anomaly,
    Flagged,
    FunnelSummary,
    Gap,
    GoalResult,
    Line,
    Metrics,
    Suggestion,
    VersionComparison,
)
from api.tables import SopVersion
from knowledge.clock import ShopTime, as_utc
from knowledge.db import in_chunks
from knowledge.embeddings import Embedder
from knowledge.tables import Customer, TimelineEntry
from sop_graphs.loader import Library, load_sop_text
from sop_graphs.spec import parse_duration
from sop_graphs.tables import Outbox, SopRun
from sop_graphs.validator import validate

_M, _T, _C = Message.__table__.c, TimelineEntry.__table__.c, Customer.__table__.c
_R, _O, _I = SopRun.__table__.c, Outbox.__table__.c, InboundEvent.__table__.c
_V = SopVersion.__table__.c
FLAG_LIMIT = 30
BEFORE_DAYS = 7  # a new version is compared with the previous one's runs of the week before it
MIN_MEMBERS = 10  # a group this small says nothing by its rate
EXCERPT = 6
GAP_QUESTIONS = 150  # distinct unanswered phrasings of a day clustered (the most frequent): e5 costs ~25 ms each
GAP_SEMANTIC_CLOSE, GAP_SEMANTIC_NEAR = 0.905, 0.87  # e5: alike on their own / alike when they share a word
GAP_HASHED_CLOSE = 0.4  # hashed character bigrams (tests, or a shop without the e5 model)
FUNCTION_CHARS = set("吗呢吧啊呀么的了是在有能可以怎什你我们这那要会还就都也请问下个和与")


# ---------------------------------------------------------------------------------------- flagged conversations

def flagged(conn: Connection, day: date, timezone: str) -> list[Flagged]:
    """Customers whose conversation on the day needs a human look, most reasons first."""
    start, end = day_window(day, timezone)
    reasons: dict[str, list[str]] = defaultdict(list)
    for cid, meta in conn.execute(select(_M.customer_id, _M.meta).where(
            _M.direction == "out", _M.at >= start, _M.at < end, _M.key.like("out/%"))).all():
        meta = meta or {}
        if meta.get("intent") in COMPLAINT_INTENTS and "情绪负面/投诉" not in reasons[cid]:
            reasons[cid].append("情绪负面/投诉")
        if meta.get("grounded") is False and "未能回答" not in reasons[cid]:
            reasons[cid].append("未能回答")
        if (meta.get("llm_failed") or meta.get("llm_rejected")) and "模型降级" not in reasons[cid]:
            reasons[cid].append("模型降级")
    for cid, kind in conn.execute(select(_T.customer_id, _T.kind).where(
            _T.kind.in_(("handoff", "paused", "unsubscribed")), _T.at >= start, _T.at < end)).all():
        label = {"handoff": "转人工", "paused": "机器人已暂停", "unsubscribed": "退订"}[kind]
        if label not in reasons[cid]:
            reasons[cid].append(label)
    ranked = sorted((cid for cid in reasons if reasons[cid]), key=lambda c: (-len(reasons[c]), c))[:FLAG_LIMIT]
    names = dict(conn.execute(select(_C.id, _C.name).where(_C.id.in_(ranked))).all()) if ranked else {}
    out = []
    for cid in ranked:
        lines = conn.execute(select(_M.at, _M.direction, _M.text).where(
            _M.customer_id == cid, _M.at >= start, _M.at < end).order_by(_M.at.desc(), _M.id.desc())
            .limit(EXCERPT)).all()
        out.append(Flagged(customer_id=cid, name=names.get(cid) or cid, reasons=reasons[cid],
                           excerpt=[Line(at=as_utc(at), direction=d, text=t[:300]) for at, d, t in reversed(lines)],
                           link=f"/api/customers/{cid}/timeline"))
    return out


# ---------------------------------------------------------------------------------------- content gaps

def gaps(conn: Connection, day: date, timezone: str, embedder: Embedder | None, limit: int = 10) -> list[Gap]:
    """The day's questions (messages the router read as asking) the agent could not ground in facts, clustered by
    meaning (largest first). Identical
    phrasings count once for clustering; the ``GAP_QUESTIONS`` most frequent phrasings are clustered."""
    start, end = day_window(day, timezone)
    replies = conn.execute(select(_M.key, _M.customer_id, _M.meta).where(
        _M.direction == "out", _M.at >= start, _M.at < end, _M.key.like("out/%"))).all()
    unanswered = {key[len("out/"):]: cid for key, cid, meta in replies
                  if (meta or {}).get("grounded") is False and (meta or {}).get("question", True)}
    asked: list[tuple[str, str]] = []
    for chunk in in_chunks([f"in/{k}" for k in unanswered]):
        asked += conn.execute(select(_M.key, _M.text).where(_M.key.in_(list(chunk)))).all()
    by_phrasing: dict[str, list[str]] = defaultdict(list)  # text -> customers who wrote it
    for key, text in asked:
        if text.strip():
            by_phrasing[text.strip()].append(unanswered[key[len("in/"):]])
    texts = sorted(by_phrasing, key=lambda t: (-len(by_phrasing[t]), t))[:GAP_QUESTIONS]
    if not texts:
        return []
    out = []
    clusters = [[texts[i] for i in members] for members in _cluster(texts, embedder)]
    for members in sorted(clusters, key=lambda m: (-sum(len(by_phrasing[t]) for t in m), m[0]))[:limit]:
        phrasings = sorted(members, key=lambda t: (-len(by_phrasing[t]), t))
        label = phrasings[0]
        out.append(Gap(label=label, questions=phrasings[:8], count=sum(len(by_phrasing[t]) for t in members),
                       customers=len({c for t in members for c in by_phrasing[t]}),
                       proposed_faq={"kind": "faq", "title": label,
                                     "text": "（请补充答案：客户问到的是 " + "、".join(phrasings[:3]) + "）"}))
    return out


def _cluster(texts: list[str], embedder: Embedder | None) -> list[list[int]]:
    """Single-linkage clusters: two questions belong together when their vectors are close enough — for the
    semantic (e5) vectors, very close, or close and sharing a content word (e5 puts unrelated short Chinese
    questions near each other too)."""
    n = len(texts)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    words = [_content_bigrams(t) for t in texts[:n]]
    if embedder is None:
        similar = np.zeros((n, n), dtype=bool)
    else:
        vectors = np.asarray(embedder.queries(texts[:n]), dtype=np.float32)
        scores = vectors @ vectors.T
        semantic = bool(getattr(embedder, "semantic", False))
        similar = scores >= (GAP_SEMANTIC_CLOSE if semantic else GAP_HASHED_CLOSE)
        if semantic:
            near = np.argwhere(scores >= GAP_SEMANTIC_NEAR)
            for i, j in near:
                if i < j and words[i] & words[j]:
                    similar[i, j] = True
    for i, j in np.argwhere(similar):
        if i < j:
            parent[root(int(i))] = root(int(j))
    first: dict[str, int] = {}
    for i, text in enumerate(texts):  # the same words, however they were punctuated
        bare = re.sub(r"\W+", "", text)
        if bare in first:
            parent[root(i)] = root(first[bare])
        first.setdefault(bare, i)
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        clusters[root(i)].append(i)
    return list(clusters.values())


def _content_bigrams(text: str) -> set[str]:
    chars = re.sub(r"[\W\d_a-zA-Z]+", "", text)
    return {chars[i:i + 2] for i in range(len(chars) - 1) if not set(chars[i:i + 2]) & FUNCTION_CHARS}


# ---------------------------------------------------------------------------------------- version comparisons

def comparisons(conn: Connection, day: date, timezone: str, window_days: int = 14) -> list[VersionComparison]:
    """SOPs with a version first run inside the window: its runs since against the previous version's runs of
    the week before (rates compare; counts come with the days they cover)."""
    start, end = day_window(day - timedelta(days=window_days - 1), timezone)[0], day_window(day, timezone)[1]
    firsts = conn.execute(select(_R.sop_id, _R.sop_version, func.min(_R.started_at)).where(_R.started_at < end)
                          .group_by(_R.sop_id, _R.sop_version)).all()
    by_sop: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for sop_id, version, first in firsts:
        by_sop[sop_id].append((int(version), as_utc(first)))
    out = []
    for sop_id, versions in sorted(by_sop.items()):
        versions.sort()
        if len(versions) < 2 or not (start <= versions[-1][1] < end):
            continue
        (before_v, before_first), (after_v, published) = versions[-2], versions[-1]
        out.append(VersionComparison(
            sop_id=sop_id, version_before=before_v, version_after=after_v,
            published_on=ShopTime(timezone).local_date(published),
            before=_summary(conn, sop_id, before_v, max(before_first, published - timedelta(days=BEFORE_DAYS)),
                            published),
            after=_summary(conn, sop_id, after_v, published, end)))
    return out


def _summary(conn: Connection, sop_id: str, version: int, start: datetime, end: datetime) -> FunnelSummary:
    runs = conn.execute(select(_R.id, _R.status).where(_R.sop_id == sop_id, _R.sop_version == version,
                                                       _R.started_at >= start, _R.started_at < end)).all()
    ids = [r for r, _ in runs]
    sent = answered = asked = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for action, n in conn.execute(select(_O.action, func.count()).where(
                _O.run_id.in_(chunk), _O.status == "sent").group_by(_O.action)).all():
            sent += n
            asked += n if action == "ask" else 0
        answered += conn.execute(select(func.count()).where(_T.run_id.in_(chunk), _T.kind == "answer",
                                                            _T.key.like("%/answer"))).scalar() or 0
    completed = sum(s == "completed" for _, s in runs)
    exited = sum(s == "exited" for _, s in runs)
    return FunnelSummary(days=max(1, round((end - start).total_seconds() / 86400)), enrolled=len(runs),
                         completed=completed, exited=exited, completion_rate=rate(completed, completed + exited),
                         sent=sent, answered=answered, answer_rate=rate(min(answered, asked), asked))


# ---------------------------------------------------------------------------------------- suggestions

@dataclass(frozen=True)
class Edit:
    """One change to an SOP file: set ``key`` of the mapping at ``path`` (a location in the YAML) to ``value``."""

    path: tuple[str | int, ...]
    key: str
    value: str


def current_text(conn: Connection, library: Library, sop_id: str) -> str | None:
    """The SOP's running YAML: the version an operator published, else the library file."""
    text = conn.execute(select(_V.source).where(_V.sop_id == sop_id, _V.status == "published")
                        .order_by(_V.version.desc())).scalar()
    if text is not None:
        return str(text)
    source = library.sources.get(sop_id)
    path = Path(source.file) if source is not None else None
    try:
        return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def propose(library: Library, sop_id: str, text: str, edits: list[Edit]) -> tuple[str, str, bool] | None:
    """``text`` (the SOP's YAML) with ``edits`` applied as line edits (comments and layout kept), its diff, and
    whether the result passes the validator; None when a location is not in the file."""
    spec, source, problems = load_sop_text(text, f"{sop_id}.yaml", sop_id)
    if spec is None or problems:
        return None
    lines = text.splitlines(keepends=True)
    for edit in edits:
        if not _apply(lines, source.lines, edit):
            return None
    new = "".join(lines)
    spec, new_source, problems = load_sop_text(new, f"{sop_id}.yaml", sop_id)
    if spec is not None and not problems:
        trial = Library(sops={**library.sops, sop_id: spec}, catalog=library.catalog,
                        sources={**library.sources, sop_id: new_source})
        problems = [p for p in validate(trial) if p.file == new_source.file]
    diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"{sop_id}.yaml（运行中）", tofile=f"{sop_id}.yaml（建议）"))
    return new, diff, spec is not None and not problems


def _apply(lines: list[str], where: dict[tuple[str | int, ...], int], edit: Edit) -> bool:
    at = where.get((*edit.path, edit.key))
    if at is not None:  # the key is on its own line ("  key: value"): replace the value
        row = lines[at - 1]
        match = re.match(rf"^(\s*(?:-\s+)?{re.escape(edit.key)}:\s*)([^#\n]*?)(\s*#.*)?(\r?\n)?$", row)
        if match is None:
            return False
        lines[at - 1] = f"{match.group(1)}{edit.value}{match.group(3) or ''}{match.group(4) or ''}"
        return True
    anchor = where.get((*edit.path, "kind")) or where.get((*edit.path, "id"))
    if anchor is None:
        return False
    row = lines[anchor - 1]
    indent = len(row) - len(row.lstrip(" -"))
    if "{" in row:  # a flow mapping on one line: not edited by lines
        return False
    lines.insert(anchor, " " * indent + f"{edit.key}: {edit.value}\n")
    return True


def _format_duration(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def suggestions(conn: Connection, library: Library, metrics: Metrics, goals: list[GoalResult],
                anomalies: list[Anomaly], gaps_found: list[Gap], timezone: str) -> list[Suggestion]:
    out: list[Suggestion] = []
    missed = {(g.metric, g.scope): g for g in goals if g.status == "missed"}
    by_metric = {(a.metric, a.scope): a for a in anomalies}
    out += _questionnaire(conn, library, metrics, missed)
    out += _checkin(conn, library, metrics, missed, by_metric, timezone)
    out += _drop_off(library, metrics)
    if (g := missed.get(("handoff_sla_rate", "shop"))) is not None:
        s = metrics.service
        out.append(Suggestion(id="handoff_sla", title="转人工响应超时，建议增加售后值班或缩短任务提醒间隔",
                              evidence=f"今日转人工 {s.handoffs} 次，超出 {s.sla_minutes:g} 分钟 SLA 的 {s.breached} 次，"
                                       f"达成率 {_pct(g.actual)}（目标 ≥ {_pct(g.target)}）"))
    for gap in gaps_found[:3]:
        if gap.count >= 2:
            out.append(Suggestion(id=f"faq:{gap.label[:20]}", title=f"补充 FAQ：「{gap.label}」",
                                  evidence=f"{gap.customers} 位客户共问了 {gap.count} 次，机器人无法作答（见内容缺口）"))
    if (a := by_metric.get(("unsubscribes", "shop"))) is not None:
        out.append(Suggestion(id="unsubscribes", title="退订增多，建议检查当天营销推送的频率与内容",
                              evidence=f"退订 {a.actual:g} 人，近 7 日均值 {a.baseline:g} 人（{a.rule}）"))
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _questionnaire(conn: Connection, library: Library, metrics: Metrics,
                   missed: dict[tuple[str, str], GoalResult]) -> list[Suggestion]:
    """A question answered by fewer than the goal: give customers longer to answer (its timeout doubled)."""
    out = []
    goal_for = {scope: g for (metric, scope), g in missed.items() if metric == "questionnaire_completion"}
    for q in sorted(metrics.questions, key=lambda q: (q.completion if q.completion is not None else 1.0)):
        goal = goal_for.get(q.sop_id) or goal_for.get("shop")
        if goal is None or q.completion is None or q.asked < 10 or q.completion >= goal.target:
            continue
        spec = library.sops.get(q.sop_id)
        index = next((i for i, s in enumerate(spec.steps) if s.id == q.step_id), None) if spec else None
        if spec is None or index is None:
            continue
        current = parse_duration(str(getattr(spec.steps[index], "timeout", "24h")))
        longer = min(current * 2, timedelta(days=3))
        text = current_text(conn, library, q.sop_id)
        proposal = propose(library, q.sop_id, text, [Edit(("steps", index), "timeout", _format_duration(longer))]) \
            if longer > current and text else None
        out.append(Suggestion(
            id=f"question:{q.sop_id}/{q.step_id}", sop_id=q.sop_id, step_id=q.step_id,
            title=f"问卷「{q.slot}」完成率偏低，建议延长等待回答的时间",
            evidence=f"今日发出 {q.asked} 次，回答 {q.answered} 次，完成率 {_pct(q.completion)}"
                     f"（目标 ≥ {_pct(goal.target)}）；当前等待 {_format_duration(current)} 后跳过",
            proposed_yaml=proposal[0] if proposal else None, diff=proposal[1] if proposal else None,
            validated=proposal[2] if proposal else False))
        if len(out) >= 2:
            break
    return out


def _checkin(conn: Connection, library: Library, metrics: Metrics, missed: dict[tuple[str, str], GoalResult],
             anomalies: dict[tuple[str, str], Anomaly], timezone: str) -> list[Suggestion]:
    """A group's check-in rate fell: remind when members actually check in (the hour most of them did, the
    last 7 days), by moving the daily check-in SOP's schedule."""
    out = []
    for group in metrics.groups:
        anomaly = anomalies.get(("checkin_rate", group.group))
        own_goal = missed.get(("checkin_rate", group.group))
        goal = own_goal or missed.get(("checkin_rate", "shop"))
        if (anomaly is None and goal is None) or group.members < MIN_MEMBERS:
            continue
        peak = _peak_checkin_hour(conn, metrics.day, timezone, group.group)
        if anomaly is None and own_goal is None and peak is None:
            continue  # the shop missed its goal, but nobody checks in in this group: not a reminder problem
        evidence = f"「{group.name}」今日打卡 {group.checkins}/{group.members}，打卡率 {_pct(group.checkin_rate)}"
        if anomaly is not None:
            evidence += f"，较 7 日均值 {_pct(anomaly.baseline)} 下降 {abs(anomaly.change):.0%}"
        if goal is not None:
            evidence += f"（目标 ≥ {_pct(goal.target)}）"
        sop_id, index, cron = _daily_group_schedule(library)
        proposal = None
        if peak is not None and sop_id is not None and cron is not None:
            fields = cron.split()
            remind = (peak - 1) % 24
            if len(fields) == 5 and (fields[0], fields[1]) != ("30", str(remind)):
                fields[0], fields[1] = "30", str(remind)
                text = current_text(conn, library, sop_id)
                proposal = propose(library, sop_id, text, [Edit(("triggers", index), "cron", f'"{" ".join(fields)}"')]) \
                    if text else None
                evidence += f"；近 7 日多数成员在 {peak}:00–{peak}:59 打卡，提醒目前在 {cron}"
        what = "打卡率下降" if anomaly is not None else "打卡率低于目标"
        out.append(Suggestion(id=f"checkin:{group.group}", sop_id=sop_id, title=(
            f"「{group.name}」{what}，建议把打卡提醒调整到成员活跃前半小时，并检查签到激励"),
            evidence=evidence, proposed_yaml=proposal[0] if proposal else None,
            diff=proposal[1] if proposal else None, validated=proposal[2] if proposal else False))
    return out


def _peak_checkin_hour(conn: Connection, day: date, timezone: str, group: str) -> int | None:
    start = day_window(day - timedelta(days=6), timezone)[0]
    end = day_window(day, timezone)[1]
    shop = ShopTime(timezone)
    hours: Counter[int] = Counter()
    for at, payload in conn.execute(select(_I.received_at, _I.payload).where(
            _I.kind == "behaviour", _I.received_at >= start, _I.received_at < end)).all():
        if (payload or {}).get("event") == "group_checkin" and (payload or {}).get("group") == group:
            hours[shop.local(at).hour] += 1
    return hours.most_common(1)[0][0] if sum(hours.values()) >= 10 else None


def _daily_group_schedule(library: Library) -> tuple[str | None, int, str | None]:
    """The SOP that posts to groups on a daily schedule (the check-in reminder), its trigger index and cron."""
    for sop_id, spec in sorted(library.sops.items()):
        if not spec.enabled or getattr(spec.defaults, "touchpoint", None) != "group":
            continue
        for i, trigger in enumerate(spec.triggers):
            cron = getattr(trigger, "cron", None)
            if cron and cron.split()[2:] == ["*", "*", "*"]:
                return sop_id, i, cron
    return None, 0, None


def _drop_off(library: Library, metrics: Metrics) -> list[Suggestion]:
    """The step where most of a busy SOP's customers stop (half or more, on at least 20 reaching it)."""
    out = []
    for funnel in metrics.funnels:
        worst = max((s for s in funnel.steps if s.drop_off is not None and s.reached >= 20),
                    key=lambda s: s.drop_off or 0.0, default=None)
        if worst is None or (worst.drop_off or 0.0) < 0.5:
            continue
        out.append(Suggestion(id=f"drop:{funnel.sop_id}/{worst.step_id}", sop_id=funnel.sop_id, step_id=worst.step_id,
                              title=f"「{funnel.name}」在「{worst.step_id}」之后流失 {worst.drop_off:.0%}，建议检查这一步的文案、"
                                    "时机或触达方式",
                              evidence=f"v{funnel.version} 今日到达 {worst.reached} 人，取消 {worst.dropped} 人，"
                                       f"下一步到达率 {1 - (worst.drop_off or 0):.0%}"))
    return out[:3]

