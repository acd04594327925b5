"""微信客服 end to end against the fake WeCom API: sync, dedupe, reply, window/budget, welcome, failures."""

from datetime import timedelta

from sqlalchemy import select

from api.tables import KfSession, WecomDelivery
from sop_graphs.tables import EmployeeTask
from tests.api.conftest import NOW, event_xml, post

KF = "wkKF001"
SEND_TIME = int(NOW.timestamp())


def _customer_says(fake, msgid, text, cid="wmKF1"):
    fake.add_kf_message(KF, {"msgid": msgid, "open_kfid": KF, "external_userid": cid, "send_time": SEND_TIME,
                             "origin": 3, "msgtype": "text", "text": {"content": text}})


def _callback(client, token="T1"):
    return post(client, event_xml("kf_msg_or_event", Token=token, OpenKfId=KF))


def _rows(service, table):
    with service.runtime.deps.engine.connect() as conn:
        return conn.execute(select(table.__table__)).mappings().all()


def test_customer_message_is_synced_answered_and_sent_with_our_msgid(client, service, fake):
    service.runtime.load_demo_shop()
    _customer_says(fake, "m1", "玻尿酸水润保湿面霜多少钱")
    _callback(client)
    service.pump_once()
    sent = fake.sent("/cgi-bin/kf/send_msg")
    assert "¥199" in sent[0]["text"]["content"]  # then the skin-profile SOP's question follows
    assert {(s["touser"], s["open_kfid"]) for s in sent} == {("wmKF1", KF)}
    assert all(len(s["msgid"]) <= 32 for s in sent)


def test_message_seen_again_in_a_later_sync_is_answered_once(client, service, fake):
    _customer_says(fake, "m1", "你好")
    _callback(client, "T1")
    service.pump_once()
    with service.runtime.deps.engine.begin() as conn:  # lose the cursor: the next sync starts over
        from sop_graphs.tables import WorkerState
        conn.execute(WorkerState.__table__.delete())
    _callback(client, "T2")
    service.pump_once()
    assert len(fake.sent("/cgi-bin/kf/send_msg")) == 1


def test_sync_follows_has_more_across_pages(client, service, fake):
    fake.page_size = 1
    for i in range(3):
        _customer_says(fake, f"m{i}", f"第{i}条", cid=f"wm{i}")
    _callback(client)
    service.pump_once()
    assert {s["touser"] for s in fake.sent("/cgi-bin/kf/send_msg")} == {"wm0", "wm1", "wm2"}


def test_sixth_message_after_one_customer_message_becomes_an_employee_task(client, service, fake):
    _customer_says(fake, "m1", "你好")
    _callback(client)
    service.pump_once()
    from sop_graphs.effects import Effects
    now = service.clock.now()
    with service.runtime.deps.engine.begin() as conn:
        effects = Effects()
        for i in range(5):
            effects.send(key=f"extra/{i}", action="message", customer_id="wmKF1", at=now, payload={"text": f"补充{i}"})
        effects.flush(conn)
    service.pump_once()
    assert len(fake.sent("/cgi-bin/kf/send_msg")) == 5  # WeCom's limit per customer message
    assert any(t["key"].startswith("extra/") for t in _rows(service, EmployeeTask))


def test_outside_the_48_hour_window_kf_sends_become_employee_tasks(client, service, fake):
    _customer_says(fake, "m1", "你好")
    _callback(client)
    service.pump_once()
    service.clock.set(service.clock.now() + timedelta(hours=49))
    from sop_graphs.effects import Effects
    with service.runtime.deps.engine.begin() as conn:
        effects = Effects()
        effects.send(key="late/1", action="message", customer_id="wmKF1", at=service.clock.now(),
                     payload={"text": "两天后的消息"})
        effects.flush(conn)
    service.pump_once()
    assert len(fake.sent("/cgi-bin/kf/send_msg")) == 1
    assert any(t["key"] == "late/1" for t in _rows(service, EmployeeTask))


def test_enter_session_sends_the_welcome_on_event_once(client, service, fake):
    event = {"msgid": "e1", "origin": 4, "msgtype": "event", "send_time": SEND_TIME,
             "event": {"event_type": "enter_session", "open_kfid": KF, "external_userid": "wmNew",
                       "welcome_code": "WC1"}}
    fake.add_kf_message(KF, event)
    _callback(client, "T1")
    service.pump_once()
    with service.runtime.deps.engine.begin() as conn:
        from sop_graphs.tables import WorkerState
        conn.execute(WorkerState.__table__.delete())
    _callback(client, "T2")
    service.pump_once()
    welcomes = fake.sent("/cgi-bin/kf/send_msg_on_event")
    assert len(welcomes) == 1 and welcomes[0]["code"] == "WC1"
    assert [s["customer_id"] for s in _rows(service, KfSession)] == ["wmNew"]


def test_msg_send_fail_turns_the_message_into_an_employee_task(client, service, fake):
    _customer_says(fake, "m1", "你好")
    _callback(client, "T1")
    service.pump_once()
    msgid = fake.sent("/cgi-bin/kf/send_msg")[0]["msgid"]
    fake.add_kf_message(KF, {"msgid": "e2", "origin": 4, "msgtype": "event", "send_time": SEND_TIME,
                             "event": {"event_type": "msg_send_fail", "open_kfid": KF, "external_userid": "wmKF1",
                                       "fail_msgid": msgid, "fail_type": 6}})
    _callback(client, "T2")
    service.pump_once()
    tasks = _rows(service, EmployeeTask)
    assert len(tasks) == 1 and "fail_type 6" in tasks[0]["title"]
    assert [d["result"] for d in _rows(service, WecomDelivery) if d["wecom_id"] == msgid] == ["failed"]


def test_asking_for_a_human_transfers_the_kf_session(client, service, fake):
    _customer_says(fake, "m1", "转人工")
    _callback(client)
    service.pump_once()
    service.pump_once()
    trans = fake.sent("/cgi-bin/kf/service_state/trans")
    assert trans and trans[0]["external_userid"] == "wmKF1"


def test_api_outage_leaves_the_callback_pending_for_a_retry(client, service, fake):
    _customer_says(fake, "m1", "你好")
    fake.fail_next["/cgi-bin/kf/sync_msg"] = [-1, -1, -1]
    _callback(client)
    service.pump_once()
    assert fake.sent("/cgi-bin/kf/send_msg") == []
    service.pump_once()
    assert len(fake.sent("/cgi-bin/kf/send_msg")) == 1


def test_web_chat_replies_never_reach_wecom(client, service, fake):
    from agent.inbound import submit

    submit(service.runtime.deps, key="w-add", customer_id="web_abc", kind="customer_added", payload={"name": "访客"})
    service.pump_once()
    submit(service.runtime.deps, key="w-1", customer_id="web_abc", kind="message", payload={"text": "你好"})
    service.pump_once()
    assert fake.sent("/cgi-bin/kf/send_msg") == [] and fake.sent("/cgi-bin/externalcontact/add_msg_template") == []
    assert _rows(service, EmployeeTask) == []
