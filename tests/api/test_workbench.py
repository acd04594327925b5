"""The operators' workbench: conversations needing a person, a human reply, operator tag edits, customer pages and
tasks with their customer and overdue flag."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from agent.inbound import submit
from agent.tables import Message
from knowledge.tables import CustomerTag
from sop_graphs.tables import EmployeeTask, Outbox
from tests.api.conftest import NOW, OPERATOR

HEADERS = {"Authorization": f"Bearer {OPERATOR}"}


def _customer(service, cid: str, *, channel: str | None = None, text: str | None = None) -> None:
    deps = service.runtime.deps
    submit(deps, key=f"add/{cid}", customer_id=cid, kind="customer_added", payload={"name": f"客户{cid}",
                                                                                    "channel_code": channel}, at=NOW)
    if text:
        submit(deps, key=f"m/{cid}", customer_id=cid, kind="message", payload={"text": text}, at=NOW)
    service.pump_once()


def test_a_complaining_customer_needs_attention_and_a_calm_one_does_not(client, service) -> None:
    _customer(service, "angry", text="收到的面霜瓶子碎了 怎么回事")
    _customer(service, "calm", text="谢谢")
    rows = client.get("/api/conversations/attention", headers=HEADERS).json()
    assert [r["customer_id"] for r in rows] == ["angry"]
    assert "情绪负面/投诉" in rows[0]["reasons"] and rows[0]["last_message"] == "收到的面霜瓶子碎了 怎么回事"


def test_a_human_replies_only_into_a_conversation_taken_over(client, service) -> None:
    _customer(service, "c1", text="在吗")
    body = {"text": "您好，我是小禾，我来帮您看看", "by": "xiaohe"}
    assert client.post("/api/conversations/c1/reply", json=body, headers=HEADERS).status_code == 409
    client.post("/api/conversations/c1/takeover", json={"by": "xiaohe"}, headers=HEADERS)
    assert client.post("/api/conversations/c1/reply", json=body, headers=HEADERS).status_code == 202
    with service.runtime.deps.engine.connect() as conn:
        sent = conn.execute(select(Outbox.executor).where(Outbox.customer_id == "c1",
                                                          Outbox.key.like("human/%"))).scalars().all()
        transcript = conn.execute(select(Message.text).where(Message.customer_id == "c1",
                                                             Message.direction == "out")).scalars().all()
    assert sent == ["human"] and body["text"] in transcript


def test_an_operator_tag_edit_is_recorded_with_the_operator_as_its_source(client, service) -> None:
    _customer(service, "c1")
    response = client.post("/api/customers/c1/tags", json={"add": ["油皮"]}, headers=HEADERS)
    assert response.status_code == 200 and "油皮" in response.json()["tags"]
    with service.runtime.deps.engine.connect() as conn:
        source = conn.execute(select(CustomerTag.source).where(CustomerTag.customer_id == "c1",
                                                               CustomerTag.tag == "油皮")).scalar()
    assert source == "operator:operator"
    assert any(e["action"] == "customer.tags" for e in client.get("/api/audit", headers=HEADERS).json())


def test_a_tag_outside_the_taxonomy_is_refused(client, service) -> None:
    _customer(service, "c1")
    response = client.post("/api/customers/c1/tags", json={"add": ["随便写的标签"]}, headers=HEADERS)
    assert response.status_code == 422 and "随便写的标签" in response.json()["detail"]


def test_customer_pages_filter_by_channel_code_and_say_the_total(client, service) -> None:
    for i in range(5):
        _customer(service, f"live{i}", channel="live_qr")
    _customer(service, "store0", channel="store_qr")
    page = client.get("/api/customers?channel_code=live_qr&limit=2&offset=0", headers=HEADERS)
    assert page.headers["x-total-count"] == "5" and len(page.json()) == 2
    rest = client.get("/api/customers?channel_code=live_qr&limit=2&offset=4", headers=HEADERS).json()
    assert len(rest) == 1 and rest[0]["channel_code"] == "live_qr"


def test_customers_filter_by_a_live_sop(client, service) -> None:
    _customer(service, "c1")
    ids = {c["id"] for c in client.get("/api/customers?sop=new_customer_nurture", headers=HEADERS).json()}
    assert ids == {"c1"}
    assert client.get("/api/customers?sop=silent_reactivation", headers=HEADERS).json() == []


def test_tasks_say_their_customer_and_whether_they_are_overdue(client, service) -> None:
    _customer(service, "c1")
    with service.runtime.deps.engine.begin() as conn:
        for key, due in (("late", NOW - timedelta(minutes=5)), ("soon", NOW + timedelta(hours=1))):
            conn.execute(EmployeeTask.__table__.insert().values(key=key, customer_id="c1", assignee="advisor",
                                                                kind="handoff", title=key, content={"text": "复制我"},
                                                                due_at=due, created_at=NOW))
    tasks = {t["title"]: t for t in client.get("/api/tasks", headers=HEADERS).json() if t["title"] in ("late", "soon")}
    assert tasks["late"]["overdue"] and not tasks["soon"]["overdue"]
    assert tasks["late"]["customer_name"] == "客户c1" and tasks["late"]["content"]["text"] == "复制我"


def test_the_transcript_shows_both_directions_oldest_first(client, service, operator_headers):
    from agent.inbound import submit

    submit(service.runtime.deps, key="add-t1", customer_id="t1", kind="customer_added", payload={"name": "小林"})
    submit(service.runtime.deps, key="m-t1", customer_id="t1", kind="message", payload={"text": "你们发什么快递"})
    service.pump_once()
    messages = client.get("/api/conversations/t1/messages", headers=operator_headers).json()
    assert messages[0]["direction"] == "in" and messages[0]["text"] == "你们发什么快递"
    assert any(m["direction"] == "out" for m in messages[1:])
    assert [m["at"] for m in messages] == sorted(m["at"] for m in messages)


def test_the_transcript_of_an_unknown_customer_is_404(client, operator_headers):
    assert client.get("/api/conversations/nobody/messages", headers=operator_headers).status_code == 404


def test_the_taxonomy_lists_the_tags_an_operator_may_set(client, service, operator_headers):
    assert client.get("/api/tags", headers=operator_headers).json() == sorted(service.runtime.deps.library.catalog.tags)


def _task(service, key, assignee, customer_id=None, status="open"):
    from knowledge.clock import as_utc
    from sop_graphs.tables import EmployeeTask

    now = as_utc(service.clock.now())
    with service.runtime.deps.engine.begin() as conn:
        conn.execute(EmployeeTask.__table__.insert().values(key=key, customer_id=customer_id, assignee=assignee,
                                                            kind="send_private", title=key, content={}, due_at=now,
                                                            status=status, created_at=now))


def test_my_tasks_include_those_for_the_owner_of_my_customers(client, service, operator_headers):
    from agent.inbound import submit
    from api import people

    people.create(service.runtime.deps.engine, "xiaohe", "password-123", "advisor", at=service.clock.now(),
                  display_name="顾问小禾")
    submit(service.runtime.deps, key="add-o1", customer_id="o1", kind="customer_added",
           payload={"name": "小林", "owner": "顾问小禾"})
    submit(service.runtime.deps, key="add-o2", customer_id="o2", kind="customer_added",
           payload={"name": "阿杰", "owner": "别人"})
    service.pump_once()
    _task(service, "mine-owner", "owner", "o1")
    _task(service, "someone-elses", "owner", "o2")
    _task(service, "my-role", "advisor")
    token = client.post("/api/auth/login", json={"username": "xiaohe", "password": "password-123"}).json()["token"]
    tasks = client.get("/api/tasks?mine=true", headers={"Authorization": f"Bearer {token}"}).json()
    assert {t["title"] for t in tasks} >= {"mine-owner", "my-role"}
    assert "someone-elses" not in {t["title"] for t in tasks}


def test_tasks_are_paged_with_a_total_and_every_status(client, service, operator_headers):
    for i in range(3):
        _task(service, f"open-{i}", "advisor")
    _task(service, "done-0", "advisor", status="done")
    response = client.get("/api/tasks?status=all&limit=2&offset=0", headers=operator_headers)
    assert response.headers["X-Total-Count"] == "4" and len(response.json()) == 2


def test_an_sop_send_is_in_the_transcript_with_its_step(client, service, operator_headers):
    from agent.inbound import submit

    submit(service.runtime.deps, key="add-s1", customer_id="s1", kind="customer_added", payload={"name": "小林"})
    service.pump_once()
    messages = client.get("/api/conversations/s1/messages", headers=operator_headers).json()
    welcome = next(m for m in messages if m["step_id"] == "welcome")
    assert welcome["sop_id"] == "new_customer_nurture" and welcome["direction"] == "out" and welcome["text"]


def test_channel_codes_are_listed_with_their_customers(client, service, operator_headers):
    from agent.inbound import submit

    for i, code in enumerate(["xhs", "xhs", "live_qr"]):
        submit(service.runtime.deps, key=f"add-c{i}", customer_id=f"c{i}", kind="customer_added",
               payload={"name": "客户", "channel_code": code})
    service.pump_once()
    assert client.get("/api/channel-codes", headers=operator_headers).json() == [
        {"code": "xhs", "customers": 2}, {"code": "live_qr", "customers": 1}]
