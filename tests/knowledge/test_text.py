import pytest

from knowledge.amounts import parse_amount
from knowledge.text import compact, normalise


@pytest.mark.parametrize(("raw", "expected"), [
    ("乾性肌膚", "干性肌肤"), ("ＤＤ２０２６", "dd2026"), ("我選４", "我选4"), ("好的！！！", "好的!"),
    ("  多  个   空格 ", "多 个 空格"), ("零\u200b宽", "零宽")])
def test_normalise_folds_width_script_case_and_spacing(raw, expected):
    assert normalise(raw) == expected


def test_compact_joins_an_id_written_with_spaces():
    assert compact("DD 2026 1100 07") == "dd2026110007"


@pytest.mark.parametrize(("text", "low", "high"), [("四五百", 400, 500), ("一两百", 100, 200), ("300-500", 300, 500),
                                                   ("3到5百", 300, 500)])
def test_ranges_keep_both_ends(text, low, high):
    amount = parse_amount(normalise(text))
    assert (amount.low, amount.high, amount.kind) == (low, high, "range")


@pytest.mark.parametrize(("text", "kind"), [("不到两百", "upper"), ("五百以内", "upper"), ("五百以上", "lower"),
                                            ("3百左右", "approx"), ("一千出头", "approx"), ("299", "exact")])
def test_bounds_and_approximations_are_told_apart(text, kind):
    assert parse_amount(normalise(text)).kind == kind


def test_a_percentage_is_not_an_amount():
    assert parse_amount("打8折") is None and parse_amount("50%") is None
