"""import-log: a conversation export becomes an editable case that loads and runs."""

import json

import yaml

from evals.case import Case
from evals.importer import import_log, skeleton

LOG = {"customer": {"id": "c_demo_zhao", "name": "赵先生"}, "messages": [
    {"at": "2026-11-23 10:00:00", "from": "customer", "text": "玻尿酸水润保湿面霜多少钱"},
    {"at": "2026-11-23 10:00:04", "from": "agent", "text": "「玻尿酸水润保湿面霜 50g」到手价 ¥199。"},
    {"at": "2026-11-24 09:00:00", "from": "customer", "text": "谢谢"},
    {"at": "2026-11-24 09:00:02", "from": "agent", "text": "不客气～"}]}


def test_customer_turns_become_say_steps_with_clock_jumps():
    steps = skeleton(LOG, "x")["steps"]
    assert [next(iter(s)) for s in steps] == ["say", "wait", "say"]
    assert steps[1]["wait"] == "+23h"


def test_facts_quoted_by_the_agent_become_assertions():
    steps = skeleton(LOG, "x")["steps"]
    assert steps[0]["expect"] == [{"reply_contains": ["¥199", "「玻尿酸水润保湿面霜 50g」"]}]


def test_written_skeleton_is_a_valid_case_with_the_replayed_state(tmp_path):
    path = tmp_path / "zhao_log.json"
    path.write_text(json.dumps(LOG, ensure_ascii=False), encoding="utf-8")
    data = yaml.safe_load(import_log(path))
    case = Case.model_validate(data)
    assert case.id == "zhao_log" and "state" in case.expect[0]
