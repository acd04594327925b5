"""Runs cases in isolation: a fresh copy of the embedded stores per case, a simulated clock, the chosen brain.

The demo shop is imported and indexed once per worker process into a template directory; each case
copies it (SQLite files and Chroma), so cases cannot see each other and start in milliseconds.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select

from agent.inbound import submit
from agent.runtime import Runtime, load_valid_library
from agent.tables import Message
from agent.tasks import announce_done, mark_done
from evals.case import Case, Step, parse_wait
from evals.cassettes import CassetteTransport
from evals.checks import Checker, Context, Outcome, Tally, project, transcript_tools
from knowledge.clock import SimClock, as_utc
from knowledge.db import init_db, make_engine, upsert
from knowledge.embeddings import E5Embedder, Embedder, HashingEmbedder
from knowledge.importer import import_demo_shop
from knowledge.retriever import Retriever
from knowledge.settings import Settings
from knowledge.tables import Customer, CustomerTag, Shipment, ShopOrder
from sop_graphs.loader import Library
from sop_graphs.tables import EmployeeTask, Outbox

Mode = Literal["offline", "replay", "live"]
CASSETTES = Path(__file__).resolve().parent / "cassettes"
EVENTS = {"purchased": ("order", {"event": "paid"}), "delivered": ("order", {"event": "delivered"}),
          "shipped": ("order", {"event": "shipped"}), "visit": ("behaviour", {"event": "miniprogram_visit"}),
          "content_read": ("behaviour", {"event": "content_read"}),
          "group_join": ("behaviour", {"event": "group_joined"}), "live_booked": ("behaviour", {"event": "live_booked"}),
          "referral": ("behaviour", {"event": "referral_joined"}), "tagged": ("tags", {}), "deleted": ("customer_deleted", {}),
          "added": ("customer_added", {})}


@dataclass
class CaseResult:
    id: str
    title: str
    file: str
    repeat: int
    passed: bool
    assertions: int = 0
    failure: dict[str, str] | None = None
    error: str | None = None
    seconds: float = 0.0
    turns: int = 0
    llm_calls: int = 0
    llm_tokens: int = 0
    tally: dict[str, int] = field(default_factory=dict)


class _Process:
    """Per-process state: the template stores, the embedder and the library, built once."""

    root: Path | None = None
    embedder: Embedder | None = None
    embedders: dict[str, Embedder] = {}  # noqa: RUF012 - one per process, shared by every case
    library: Library | None = None
    kind = ""

    @classmethod
    def prepare(cls, embedder_kind: str, shop: str | None = None) -> None:
        if cls.root is not None and cls.kind == f"{embedder_kind}/{shop}":
            return
        cls.kind = f"{embedder_kind}/{shop}"
        cls.root = Path(tempfile.mkdtemp(prefix="sopagent-eval-"))
        if embedder_kind not in cls.embedders:
            cls.embedders[embedder_kind] = E5Embedder() if embedder_kind == "e5" else HashingEmbedder()
        cls.embedder = cls.embedders[embedder_kind]
        settings = Settings(home=cls.root / "template", embedder=embedder_kind, shop_dir=shop_dir(shop))
        settings.home.mkdir(parents=True)
        engine = make_engine(settings.db_url)
        init_db(engine)  # every table is registered: agent.runtime imports the table modules
        import_demo_shop(engine, settings.shop_timezone, settings.shop_path)
        Retriever(engine, settings.chroma_path, cls.embedder).sync()
        engine.dispose()
        cls.library = load_valid_library(settings.library_path)


def shop_dir(name: str | None) -> Path | None:
    """A shop directory with a ``shop.yaml`` manifest: a bundled one by name under knowledge/ (``tea_shop``),
    or a path relative to the repository (``tests/knowledge/data/appliance_shop``). None: the demo shop."""
    if name is None:
        return None
    root = Path(__file__).resolve().parent.parent
    path = root / name if "/" in name else root / "knowledge" / name
    if not (path / "shop.yaml").exists():
        raise ValueError(f"unknown shop {name!r}: no knowledge/{name}/shop.yaml")
    return path


def _library(case: Case) -> Library:
    base = _Process.library
    assert base is not None
    if case.world.sops == "all":
        sops = dict(base.sops)
    else:
        sops = {i: s if i in case.world.sops else s.model_copy(update={"enabled": False}) for i, s in base.sops.items()}
    return Library(sops=sops, catalog=base.catalog, sources=dict(base.sources))


class CaseRun:
    """One execution of one case."""

    def __init__(self, case: Case, mode: Mode, repeat: int, embedder_kind: str,
                 cassettes: Path = CASSETTES, live_transport: httpx.BaseTransport | None = None) -> None:
        _Process.prepare(embedder_kind, case.world.shop)
        assert _Process.root is not None
        self.case = case
        self.home = _Process.root / f"{case.id}-{repeat}-{os.getpid()}"
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.copytree(_Process.root / "template", self.home)
        overrides = dict(case.world.settings)
        settings = Settings(home=self.home, embedder=embedder_kind, brain="offline" if mode == "offline" else "llm",
                            shop_dir=shop_dir(case.world.shop), **overrides)
        tz = ZoneInfo(settings.shop_timezone)
        start = datetime.fromisoformat(case.world.start).replace(tzinfo=tz)
        self.clock = SimClock(as_utc(start))
        self.cassette: CassetteTransport | None = None
        http = None
        if mode != "offline":
            inner = (live_transport or httpx.HTTPTransport()) if mode == "live" else None
            self.cassette = CassetteTransport(cassettes / f"{case.id}.json", inner)
            http = httpx.Client(transport=self.cassette)
        self.runtime = Runtime.build(settings, clock=self.clock, library=_library(case), embedder=_Process.embedder,
                                     llm_http=http)
        self.settings = settings
        self.default = case.world.customers[0].id if case.world.customers else "c1"
        self.ctx = Context(engine=self.runtime.deps.engine, shop=self.runtime.deps.shop,
                           cap=settings.daily_marketing_cap, quiet=(settings.quiet_start, settings.quiet_end),
                           customer=self.default)
        self.checked = 0
        self.final_state: dict[str, Any] = {}

    # -------------------------------------------------------------- world and steps

    def _world(self) -> None:
        deps, now = self.runtime.deps, self.clock.now()
        with deps.engine.begin() as conn:
            for order in self.case.world.orders:
                upsert(conn, ShopOrder.__table__, [{"items": [], "address": "", "amount": 0, **order,
                                                    "created_at": _when(order.get("created_at"), now)}])
            for shipment in self.case.world.shipments:
                upsert(conn, Shipment.__table__, [{"carrier": "", "eta": None, "events": [], **shipment}])
        for c in self.case.world.customers:
            if c.added:
                submit(deps, key=f"world-add/{c.id}", customer_id=c.id, kind="customer_added", at=now,
                       payload={"name": c.name, "owner": c.owner, "channel_code": c.channel_code, "tags": c.tags,
                                "attributes": c.attributes})
            else:
                with deps.engine.begin() as conn:
                    conn.execute(Customer.__table__.insert().values(
                        id=c.id, name=c.name, owner=c.owner, channel_code=c.channel_code, added_at=as_utc(now),
                        stage=c.stage or "active", attributes=c.attributes))
                    upsert(conn, CustomerTag.__table__, [{"customer_id": c.id, "tag": t, "source": "world",
                                                          "created_at": as_utc(now)} for t in c.tags])
        self.runtime.run_until(now + timedelta(seconds=5))
        with deps.engine.begin() as conn:
            for c in self.case.world.customers:
                if c.stage and c.added:
                    conn.execute(Customer.__table__.update().where(Customer.__table__.c.id == c.id)
                                 .values(stage=c.stage))

    def _say(self, step: Step) -> None:
        deps = self.runtime.deps
        cid = step.customer or self.default
        with deps.engine.connect() as conn:
            last_out = conn.execute(select(func.max(Outbox.id))).scalar() or 0
            last_msg = conn.execute(select(func.max(Message.id))).scalar() or 0
        texts = step.say if isinstance(step.say, list) else [step.say]
        for i, text in enumerate(texts):
            at = self.clock.now()
            submit(deps, key=f"say/{cid}/{at.isoformat()}/{i}", customer_id=cid, kind="message",
                   payload={"text": str(text)}, at=at)
            self.runtime.run_until(at + timedelta(milliseconds=500))
        self.runtime.run_until(self.clock.now() + timedelta(seconds=self.settings.burst_window_seconds + 3))
        with deps.engine.connect() as conn:
            rows = conn.execute(select(Outbox.payload).where(Outbox.customer_id == cid, Outbox.id > last_out,
                                                             Outbox.action.not_in(("tag", "task")), Outbox.status != "cancelled")
                                .order_by(Outbox.id)).scalars().all()
        self.ctx.customer = cid
        self.ctx.last_replies = [str(p.get("text") or p.get("title") or "") for p in rows]
        self.ctx.last_tools = transcript_tools(deps.engine, cid, last_msg)

    def _wait(self, text: str) -> None:
        delta, hhmm = parse_wait(text)
        target = self.clock.now() + delta
        if hhmm is not None:
            local = self.runtime.deps.shop.local(target).replace(hour=hhmm[0], minute=hhmm[1], second=0, microsecond=0)
            target = as_utc(local)
        self.runtime.run_until(max(target, self.clock.now()))

    def _event(self, event: dict[str, Any], index: int) -> None:
        event = dict(event)
        kind_name = event.pop("kind")
        cid = event.pop("customer", self.default)
        if kind_name == "task_done":  # an employee completes the customer's open tasks, as in the console
            self._tasks_done(cid)
            return
        kind, base = EVENTS[kind_name]
        at = self.clock.now()
        submit(self.runtime.deps, key=f"event/{index}/{kind_name}/{cid}", customer_id=cid, kind=kind, at=at,
               payload={**base, **event})
        self.runtime.run_until(at + timedelta(seconds=5))

    def _tasks_done(self, cid: str) -> None:
        deps = self.runtime.deps
        with deps.engine.begin() as conn:
            ids = list(conn.execute(select(EmployeeTask.id).where(EmployeeTask.customer_id == cid,
                                                                  EmployeeTask.status == "open")).scalars())
            tasks = [task for task_id in ids if (task := mark_done(conn, task_id, deps.clock.now())) is not None]
        for task in tasks:
            announce_done(deps, task)
        self.runtime.run_until(self.clock.now() + timedelta(seconds=5))

    def _check(self, assertions: list[dict[str, Any]], where: str) -> Outcome | None:
        checker = Checker(self.ctx)
        for assertion in assertions:
            self.checked += 1
            outcome = checker.run(assertion)
            if not outcome.passed:
                outcome.what = f"{where}: {outcome.what}"
                return outcome
        return None

    def run(self, repeat: int) -> CaseResult:
        started = time.perf_counter()
        result = CaseResult(self.case.id, self.case.title, self.case.file, repeat, passed=False)
        failure: Outcome | None = None
        try:
            self._world()
            for index, step in enumerate(self.case.steps, 1):
                if self.cassette is not None:
                    self.cassette.step = index
                label = f"step {index}"
                if step.say is not None:
                    self._say(step)
                    label += f" say {step.say!r}"
                elif step.wait is not None:
                    self._wait(step.wait)
                elif step.event is not None:
                    self._event(step.event, index)
                failure = self._check(step.check or step.expect, label)
                if failure:
                    break
            if failure is None:
                failure = self._check(self.case.expect, "end")
            checker = Checker(self.ctx)
            violations = checker.quiet_violations() + checker.cap_violations()
            self.ctx.tally.policy_violations += len(violations)
            if failure is None and violations:
                failure = Outcome(False, "policy: contact policy violated", "; ".join(violations))
            self.final_state = project(self.ctx.engine)
            if self.cassette is not None and self.cassette.missing:
                step, key = self.cassette.missing[0]
                result.error = (f"missing LLM cassette for case {self.case.id!r} at step {step} (request {key[:12]}); "
                                "record it with --mode live")
        except Exception as exc:  # one broken case must not stop the suite
            result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        finally:
            self.runtime.deps.engine.dispose()
            if self.cassette is not None:
                self.cassette.save()
            shutil.rmtree(self.home, ignore_errors=True)
        conversation = self.runtime.conversation
        result.turns = conversation.stats["turns"] if conversation else 0
        if self.cassette is not None:
            result.llm_calls, result.llm_tokens = self.cassette.calls, self.cassette.tokens
        result.assertions = self.checked
        result.failure = {"what": failure.what, "diff": failure.diff} if failure else None
        result.passed = failure is None and result.error is None
        result.tally = asdict(self.ctx.tally)
        result.seconds = time.perf_counter() - started
        return result


def _when(value: Any, default: datetime) -> datetime:
    if not value:
        return as_utc(default)
    return as_utc(datetime.fromisoformat(str(value)).replace(tzinfo=ZoneInfo("Asia/Shanghai")))


def run_case(case: Case, mode: Mode = "offline", repeat: int = 0, embedder: str = "e5") -> CaseResult:
    return CaseRun(case, mode, repeat, embedder).run(repeat)


def _run_one(args: tuple[dict[str, Any], Mode, int, str]) -> dict[str, Any]:
    data, mode, repeat, embedder = args
    return asdict(run_case(Case.model_validate(data), mode, repeat, embedder))


def run_suite(cases: list[Case], mode: Mode = "offline", repeat: int = 1, jobs: int = 2,
              embedder: str = "e5") -> list[CaseResult]:
    """Every case × repeat, in ``jobs`` processes (cases are isolated, so order does not matter)."""
    work = [(c.model_dump(), mode, r, embedder) for r in range(repeat) for c in cases]
    if jobs <= 1:
        return [CaseResult(**_run_one(w)) for w in work]
    # spawn, not fork: a forked child inherits onnxruntime's thread pool locks (e5) and can deadlock
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [CaseResult(**r) for r in pool.map(_run_one, work, chunksize=max(1, len(work) // (jobs * 8)))]


def aggregate(results: list[CaseResult]) -> dict[str, Any]:
    """Suite metrics: pass rate, pass^k, step adherence, tags, facts, handoffs, policy, LLM use."""
    tally = Tally()
    for r in results:
        tally.add(Tally(**r.tally))
    by_case: dict[str, list[bool]] = {}
    for r in results:
        by_case.setdefault(r.id, []).append(r.passed)
    turns = sum(r.turns for r in results) or 1

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    present = tally.tags_found + tally.tags_forbidden_found
    return {
        "cases": len(by_case), "runs": len(results), "passed": sum(r.passed for r in results),
        "failed": sum(not r.passed for r in results),
        "pass^k": ratio(sum(all(v) for v in by_case.values()), len(by_case)),
        "k": max((len(v) for v in by_case.values()), default=0),
        "step_adherence": ratio(tally.sop_passed, tally.sop_checks),
        "tag_recall": ratio(tally.tags_found, tally.tags_expected),
        "tag_precision": ratio(tally.tags_found, present),
        "fact_accuracy": ratio(tally.facts_found, tally.facts_expected),
        "handoff_precision": ratio(tally.handoff_tp, tally.handoff_tp + tally.handoff_fp),
        "handoff_recall": ratio(tally.handoff_tp, tally.handoff_tp + tally.handoff_fn),
        "policy_violations": tally.policy_violations,
        "turns": turns, "llm_calls_per_turn": round(sum(r.llm_calls for r in results) / turns, 2),
        "llm_tokens_per_turn": round(sum(r.llm_tokens for r in results) / turns, 1),
    }
