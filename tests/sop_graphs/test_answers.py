from datetime import date
from pathlib import Path

import pytest

from knowledge.amounts import to_number
from sop_graphs.answers import parse_answer, parse_date
from sop_graphs.loader import load_catalog
from sop_graphs.shop_data import FactValue, FactVocabulary
from sop_graphs.spec import Answer, Choice

LIBRARY_VOCABULARY = load_catalog(Path(__file__).resolve().parents[2] / "sop_graphs" / "library")[0].profile.facts[
    "skin_type"]

SKIN = Answer(type="choice", options=[Choice(value="干皮", tags=["干皮"]), Choice(value="油皮", tags=["油皮"]),
                                      Choice(value="混合皮", tags=["混合皮"]), Choice(value="敏感肌", tags=["敏感肌"])])
VOCABULARY = FactVocabulary(label="肤质", values={
    "混合皮": FactValue(synonyms=["混油"], patterns=["t区.{0,6}油.{0,12}(两颊|脸颊).{0,6}干"]),
    "干皮": FactValue(synonyms=["干性"]), "油皮": FactValue(synonyms=["油性", "oily"])})


@pytest.mark.parametrize(("text", "value"), [("二十五", 25), ("两百", 200), ("三千五", 3500), ("一百零五", 105),
                                             ("3百", 300), ("1.5万", 15000)])
def test_chinese_and_mixed_numerals_parse(text, value):
    assert to_number(text) == value


@pytest.mark.parametrize(("text", "value"), [("T区油，两颊干", "混合皮"), ("乾性肌膚", "干皮"), ("２", "油皮"),
                                             ("我选4", "敏感肌"), ("oily skin", "油皮"), ("第三个", "混合皮")])
def test_choice_understands_descriptions_traditional_full_width_ordinals_and_english(text, value):
    assert parse_answer(SKIN, text, date(2026, 1, 1), VOCABULARY).value == value


def test_negated_choice_word_is_not_an_answer():
    assert not parse_answer(SKIN, "我不是油皮", date(2026, 1, 1), VOCABULARY).ok


@pytest.mark.parametrize(("text", "value"), [("四五百", 450), ("不到两百", 199), ("3百左右", 300), ("一千出头", 1150),
                                             ("五百以内", 499), ("两三百吧", 250)])
def test_budget_ranges_and_bounds_land_in_the_right_band(text, value):
    assert parse_answer(Answer(type="number"), text, date(2026, 1, 1)).value == value


@pytest.mark.parametrize("text", ["保密", "不方便说", "这个不想说"])
def test_declining_a_number_skips_without_a_value(text):
    parsed = parse_answer(Answer(type="number"), text, date(2026, 1, 1))
    assert parsed.skipped and parsed.value is None


def test_order_answer_takes_an_order_number_or_phone_not_any_text():
    spec = Answer(type="order")
    assert parse_answer(spec, "dd2026 1100 007", date(2026, 1, 1)).value == "DD20261100007"
    assert parse_answer(spec, "138 1234 5678", date(2026, 1, 1)).value == "13812345678"
    assert not parse_answer(spec, "东西坏了", date(2026, 1, 1)).ok


def test_number_answer_reads_colloquial_chinese():
    assert parse_answer(Answer(type="number"), "大概两百块吧", date(2026, 1, 1)).value == 200


def test_choice_matches_synonym_and_carries_its_tags():
    spec = Answer(type="choice", options=[Choice(value="干皮", synonyms=["起皮"], tags=["干皮"]),
                                         Choice(value="油皮", tags=["油皮"])])
    parsed = parse_answer(spec, "冬天老是起皮", date(2026, 1, 1))
    assert (parsed.value, parsed.tags) == ("干皮", ["干皮"])


def test_choice_by_number_picks_that_option():
    spec = Answer(type="choice", options=[Choice(value="干皮"), Choice(value="油皮")])
    assert parse_answer(spec, "2", date(2026, 1, 1)).value == "油皮"


def test_skip_word_is_a_skip_not_an_answer():
    assert parse_answer(Answer(type="text"), "不想说", date(2026, 1, 1)).skipped


def test_next_monday_date():
    assert parse_date("下周一", date(2026, 11, 25)) == date(2026, 11, 30)


def test_the_longer_description_wins_over_a_word_inside_it():
    # "油光满面" alone would be 油皮 and "起皮" 干皮; the T-zone/cheeks description is 混合皮
    text = "我t区一到下午就油光满面的 但是两边脸颊又干 冬天还会起皮"
    assert parse_answer(SKIN, text, date(2026, 1, 1), LIBRARY_VOCABULARY).value == "混合皮"
