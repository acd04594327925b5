"""`sopagent wecom sync`: a corp's existing contacts, tags and groups come in page by page, without firing
customer_added SOPs, within the rate limit, and a run stopped midway resumes where it stopped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from agent.inbound import submit
from agent.runtime import Runtime
from agent.tables import InboundEvent
from api.tables import WeComGroupChat
from api.wecom.client import WeComClient
from api.wecom.fake import FakeWeCom
from api.wecom.sync import ContactSync, Pacer
from knowledge.clock import SimClock
from knowledge.tables import Customer, CustomerTag
from sop_graphs.loader import load_sop_text
from sop_graphs.tables import SopRun
from tests.api.conftest import NOW, wecom_settings

CREATED = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())


def _corp(users: int = 3, per_user: int = 150, groups: int = 3) -> FakeWeCom:
    fake = FakeWeCom()
    fake.corp_tags = {"老客": "et1", "VIP": "et2"}
    fake.follow_users = [f"u{i}" for i in range(users)]
    fake.external_contacts = [
        {"external_contact": {"external_userid": f"wm{u}_{i}", "name": f"客户{u}-{i}"},
         "follow_info": {"userid": f"u{u}", "createtime": CREATED, "tag_id": ["et1"] if i % 2 else [],
                         "state": "store_01" if i % 3 == 0 else ""}}
        for u in range(users) for i in range(per_user)]
    fake.group_chats = {f"wrOg{g}": {"chat_id": f"wrOg{g}", "name": f"宠粉群{g}", "owner": "u0",
                                     "create_time": CREATED, "member_list": [
                                         {"userid": "u0", "type": 1}, {"userid": f"wm0_{g}", "type": 2}]}
                        for g in range(groups)}
    return fake


@pytest.fixture
def runtime(tmp_path) -> Runtime:
    settings = wecom_settings(tmp_path / "home")
    return Runtime.build(settings, clock=SimClock(NOW))


def _sync(runtime: Runtime, fake: FakeWeCom, **kwargs) -> ContactSync:
    client = WeComClient(runtime.deps.settings, transport=fake.transport(), sleep=lambda _: None)
    return ContactSync(client, runtime.deps.engine, runtime.deps.library, runtime.deps.clock,
                       pacer=kwargs.pop("pacer", Pacer(10_000, sleep=lambda _: None)), **kwargs)


def _count(runtime: Runtime, table) -> int:
    with runtime.deps.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_every_contact_of_every_follow_user_comes_in_with_its_tags(runtime):
    fake = _corp()
    report = _sync(runtime, fake).run()
    assert report.finished and (report.new_customers, report.contacts) == (450, 450)
    assert report.pages >= 6  # 150 contacts a user, 100 a page: the cursor was followed
    with runtime.deps.engine.connect() as conn:
        row = conn.execute(select(Customer.__table__).where(Customer.id == "wm1_3")).mappings().one()
        tags = conn.execute(select(CustomerTag.tag, CustomerTag.source).where(CustomerTag.customer_id == "wm1_3")).all()
    assert (row["name"], row["owner"], row["channel_code"]) == ("客户1-3", "u1", "store_01")
    assert tags == [("老客", "wecom:sync")]


def test_imported_contacts_fire_no_customer_added_sop(runtime):
    _sync(runtime, _corp(users=1, per_user=5)).run()
    runtime.run_until(runtime.deps.clock.now())
    assert _count(runtime, SopRun) == 0 and runtime.deps.channel.records() == []


def test_an_sop_can_opt_in_to_imported_contacts(runtime):
    text = """id: welcome_back
name: 老客回访
family: reactivation
goal: 接入后问候已有客户
triggers:
  - on: contact_imported
defaults: {touchpoint: private, mode: member_task}
steps:
  - id: hello
    kind: message
    marketing: false
    text: "{name}，我们升级了服务，有问题随时找我"
  - id: done
    kind: end
"""
    spec, source, problems = load_sop_text(text, "welcome_back.yaml", "welcome_back")
    assert spec is not None and not problems
    runtime.replace_sop(spec, source)
    report = _sync(runtime, _corp(users=1, per_user=4)).run()
    assert report.queued == 4
    runtime.run_until(runtime.deps.clock.now())
    with runtime.deps.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SopRun).where(SopRun.sop_id == "welcome_back")).scalar() == 4


def test_a_known_customer_keeps_its_stage_and_history(runtime):
    submit(runtime.deps, key="add-wm0_1", customer_id="wm0_1", kind="customer_added", payload={"name": ""})
    runtime.run_until(runtime.deps.clock.now())
    report = _sync(runtime, _corp(users=1, per_user=3)).run()
    assert (report.new_customers, report.updated_customers) == (2, 1)
    with runtime.deps.engine.connect() as conn:
        stage, name = conn.execute(select(Customer.stage, Customer.name).where(Customer.id == "wm0_1")).one()
    assert (stage, name) == ("new", "客户0-1")


def test_groups_are_stored_with_their_external_members(runtime):
    _sync(runtime, _corp(groups=3)).run()
    with runtime.deps.engine.connect() as conn:
        rows = conn.execute(select(WeComGroupChat.chat_id, WeComGroupChat.name, WeComGroupChat.external_members)
                            .order_by(WeComGroupChat.chat_id)).all()
    assert rows[0] == ("wrOg0", "宠粉群0", ["wm0_0"]) and len(rows) == 3


def test_a_rate_limit_that_outlasts_the_retries_stops_the_run_and_the_next_resumes(runtime):
    fake = _corp()
    sync = _sync(runtime, fake)
    fake.fail_next["/cgi-bin/externalcontact/batch/get_by_user"] = []
    pages = 0
    real = sync.client.contacts_by_user

    def limited(*args, **kwargs):
        nonlocal pages
        pages += 1
        if pages == 3:  # the third page: WeCom says 45009 on every retry
            fake.fail_next["/cgi-bin/externalcontact/batch/get_by_user"] = [45009, 45009, 45009]
        return real(*args, **kwargs)

    sync.client.contacts_by_user = limited  # type: ignore[method-assign]
    first = sync.run()
    assert not first.finished and "45009" in (first.stopped or "") and first.new_customers == 200
    second = _sync(runtime, fake).run()
    assert second.resumed and second.finished and second.new_customers == 250
    assert _count(runtime, Customer) == 450


def test_a_second_run_starts_over_and_changes_only_what_changed(runtime):
    fake = _corp(users=1, per_user=10)
    _sync(runtime, fake).run()
    again = _sync(runtime, fake).run()
    assert again.finished and not again.resumed and (again.new_customers, again.updated_customers) == (0, 0)


def test_calls_are_paced_to_the_configured_rate(runtime):
    now, calls = [0.0], []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(600, sleep=sleep, monotonic=lambda: now[0])  # 10 a second
    real_wait = pacer.wait
    pacer.wait = lambda: (real_wait(), calls.append(now[0]))  # type: ignore[method-assign]
    _sync(runtime, _corp(users=1, per_user=5, groups=0), pacer=pacer).run(groups=False)
    assert len(calls) >= 3 and all(b - a >= 0.1 - 1e-9 for a, b in zip(calls, calls[1:], strict=False))


def test_no_inbound_event_is_queued_when_no_sop_opts_in(runtime):
    _sync(runtime, _corp(users=1, per_user=5)).run()
    assert _count(runtime, InboundEvent) == 0
