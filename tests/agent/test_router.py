"""The router: one understanding per message — ids, overrides, intent, facts — from the library's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.router import Router, extract_ids, without_ids
from sop_graphs.loader import load_catalog
from sop_graphs.shop_data import IntentBook, IntentEntry

LIBRARY = Path(__file__).resolve().parents[2] / "sop_graphs" / "library"


@pytest.fixture(scope="module")
def router() -> Router:
    catalog, problems = load_catalog(LIBRARY)
    assert not problems
    return Router(catalog)


def test_order_id_in_lower_case_or_with_spaces_is_one_normalised_code():
    assert extract_ids("dd2026 1100 007 到哪了")[0] == ["DD20261100007"]


def test_phone_number_is_never_an_order_code():
    codes, phones, _ = extract_ids("我手机 138 1234 5678 查下单")
    assert codes == [] and phones == ["13812345678"]


def test_product_link_gives_the_product_id_as_a_code():
    codes, _, links = extract_ids("https://item.example.com/100012345678.html 这个有货吗")
    assert "100012345678" in codes and links


def test_opt_out_rule_overrides_the_classifier(router):
    assert router.understand("以后不要再给我推送了").intent == "unsubscribe"


def test_carrier_request_is_not_an_opt_out(router):
    assert router.understand("不要发顺丰，发京东可以吗").intent != "unsubscribe"


def test_explicit_request_for_a_human_is_an_override(router):
    assert router.understand("转人工").intent == "human"


def test_declining_a_human_is_not_a_request_for_one(router):
    assert router.understand("不用转人工 我自己看看").intent != "human"


def test_an_order_number_makes_a_vague_message_about_that_order(router):
    assert router.understand("DD20261100007 麻烦看下").intent in ("order_status", "logistics")


def test_my_parcel_named_by_product_is_a_delivery_question(router):
    assert router.understand("我买的卸妆油怎么还没到").intent == "logistics"


@pytest.mark.parametrize(("text", "key", "value"), [
    ("T区油，两颊干", "skin_type", "混合皮"), ("乾性肌膚", "skin_type", "干皮"), ("老是长痘", "concern", "控油祛痘"),
    ("三百块以内有啥抗老的", "budget", "299"), ("我怀孕五个月了", "pregnant", "是")])
def test_profile_facts_come_from_the_shop_vocabulary(router, text, key, value):
    assert (key, value) in {(f.key, f.value) for f in router.understand(text).facts}


def test_negated_skin_type_is_not_a_fact(router):
    assert not [f for f in router.understand("我不是油皮").facts if f.key == "skin_type"]


def test_a_product_name_is_not_the_customers_concern(router):
    facts = router.understand("玻尿酸水润保湿面霜多少钱").facts
    assert not [f for f in facts if f.key == "concern"]


def test_pregnancy_asked_about_is_a_constraint_not_a_fact(router):
    u = router.understand("孕妇能用吗")
    assert "孕期" in u.constraints and not [f for f in u.facts if f.key == "pregnant"]


def test_the_word_shi_alone_is_not_pregnancy(router):
    assert router.understand("这款防晒是物理的吗").constraints == []


def test_stop_asking_clause_is_found_inside_a_request(router):
    u = router.understand("别问了 直接说你们有啥好用的面霜")
    assert "stop_asking" in [u.intent, *u.also]


def test_an_operator_teaches_a_new_phrasing_with_data_not_code():
    base = {"greeting": IntentEntry(examples=["你好", "在吗", "哈喽"]),
            "invoice": IntentEntry(examples=["开发票", "发票怎么开", "要专票"])}
    before = Router(load_catalog(LIBRARY)[0].model_copy(update={"intents": IntentBook(intents=base)}))
    taught = dict(base, invoice=IntentEntry(examples=[*base["invoice"].examples, "给我开个抬头", "报销凭证"]))
    after = Router(load_catalog(LIBRARY)[0].model_copy(update={"intents": IntentBook(intents=taught)}))
    assert before.understand("报销凭证能给吗").intent != "invoice" or before.understand("报销凭证能给吗").confidence < 0.6
    assert after.understand("报销凭证能给吗").intent == "invoice"


def test_ids_and_their_labels_are_taken_out_of_what_the_classifier_reads():
    assert without_ids("按摩仪不发热了 订单3521120400000008 能换吗") == "按摩仪不发热了 能换吗"


def test_asking_whether_we_are_a_bot_is_not_a_request_for_a_human(router):
    assert router.understand("你是机器人还是真人啊 说实话").intent != "human"


def test_explicit_request_for_a_person_is_still_one(router):
    assert router.understand("找真人 别用机器人回我").intent == "human"


def test_known_misspelling_is_corrected_before_anything_reads_the_message(router):
    assert "面膜" in router.understand("补水面摸多少钱").normalised
