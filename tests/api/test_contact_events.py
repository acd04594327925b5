"""Customer events from WeCom: add (welcome within 20 s), tag edits synced, deletions, group joins."""

from datetime import timedelta

from sqlalchemy import select

from knowledge.tables import Customer, CustomerTag
from sop_graphs.tables import EmployeeTask
from tests.api.conftest import event_xml, post

ADD = dict(ChangeType="add_external_contact", UserID="zhangsan", ExternalUserID="wmABC", State="qr_store1",
           WelcomeCode="WELCOME1")


def _customer(service, cid="wmABC"):
    with service.runtime.deps.engine.connect() as conn:
        return conn.execute(select(Customer.__table__).where(Customer.__table__.c.id == cid)).mappings().first()


def _tags(service, cid="wmABC"):
    with service.runtime.deps.engine.connect() as conn:
        return set(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == cid)).scalars())


def test_add_creates_the_customer_with_channel_code_and_owner(client, service, fake):
    fake.contacts["wmABC"] = {"external_contact": {"name": "小林"}, "follow_user": [{"userid": "zhangsan", "tags": []}]}
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    customer = _customer(service)
    assert (customer["name"], customer["owner"], customer["channel_code"]) == ("小林", "zhangsan", "qr_store1")


def test_add_sends_one_welcome_with_the_welcome_code(client, service, fake):
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    welcomes = fake.sent("/cgi-bin/externalcontact/send_welcome_msg")
    assert len(welcomes) == 1 and welcomes[0]["welcome_code"] == "WELCOME1"
    assert "1/3" in welcomes[0]["text"]["content"]  # welcome and first question go out as one welcome message


def test_welcome_already_sent_by_another_app_is_not_an_error(client, service, fake):
    fake.fail_next["/cgi-bin/externalcontact/send_welcome_msg"] = [41051]
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(EmployeeTask.__table__)).first() is None


def test_welcome_after_the_20_second_window_becomes_an_employee_task(client, service, fake):
    post(client, event_xml("change_external_contact", **ADD))
    service.processor.process()
    service.clock.set(service.clock.now() + timedelta(seconds=30))
    service.pump_once()
    assert fake.sent("/cgi-bin/externalcontact/send_welcome_msg") == []
    with service.runtime.deps.engine.connect() as conn:
        assert conn.execute(select(EmployeeTask.__table__)).first() is not None


def test_tag_edit_in_the_wecom_client_is_synced_without_writing_back(client, service, fake):
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    marks_before = len(fake.sent("/cgi-bin/externalcontact/mark_tag"))
    fake.contacts["wmABC"] = {"external_contact": {"name": "小林"},
                              "follow_user": [{"userid": "zhangsan", "tags": [{"tag_name": "敏感肌", "type": 1}]}]}
    post(client, event_xml("change_external_contact", ChangeType="edit_external_contact", UserID="zhangsan",
                           ExternalUserID="wmABC"))
    service.pump_once()
    assert "敏感肌" in _tags(service)
    assert len(fake.sent("/cgi-bin/externalcontact/mark_tag")) == marks_before


def test_sop_tags_are_written_to_wecom_with_corp_tag_ids(client, service, fake):
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    from agent.inbound import submit
    submit(service.runtime.deps, key="m1", customer_id="wmABC", kind="message", payload={"text": "4"})
    service.pump_once()
    service.pump_once()
    marks = fake.sent("/cgi-bin/externalcontact/mark_tag")
    assert marks and marks[-1]["userid"] == "zhangsan"
    assert all(tag.startswith("et") for tag in marks[-1]["add_tag"])


def test_customer_deleting_the_employee_churns_and_stops_sops(client, service, fake):
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    post(client, event_xml("change_external_contact", ChangeType="del_follow_user", UserID="zhangsan",
                           ExternalUserID="wmABC"))
    service.pump_once()
    assert _customer(service)["stage"] == "churned"


def test_group_join_of_a_known_customer_is_a_behaviour_event(client, service, fake):
    post(client, event_xml("change_external_contact", **ADD))
    service.pump_once()
    xml = event_xml("change_external_chat", ChatId="wrGROUP", ChangeType="update", UpdateDetail="add_member",
                    JoinScene="1").replace("</xml>", "<MemChangeList><Item>wmABC</Item><Item>wmStranger</Item>"
                                                      "</MemChangeList></xml>")
    post(client, xml)
    service.pump_once()
    from knowledge.tables import TimelineEntry
    with service.runtime.deps.engine.connect() as conn:
        kinds = [(r.customer_id, r.kind) for r in conn.execute(select(TimelineEntry.customer_id, TimelineEntry.kind))]
    assert ("wmABC", "behaviour") in kinds and not any(c == "wmStranger" for c, _ in kinds)
    from sop_graphs.tables import SopRun
    with service.runtime.deps.engine.connect() as conn:
        runs = set(conn.execute(select(SopRun.sop_id).where(SopRun.customer_id == "wmABC")).scalars())
    assert "group_member_welcome" in runs  # the group SOP reacts to the join
