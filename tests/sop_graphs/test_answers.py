from datetime import date

import pytest

from sop_graphs.answers import chinese_to_int, parse_answer, parse_date
from sop_graphs.spec import Answer, Choice


@pytest.mark.parametrize(("text", "value"), [("二十五", 25), ("两百", 200), ("三千五", 3500), ("一百零五", 105)])
def test_chinese_numerals_parse(text, value):
    assert chinese_to_int(text) == value


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
