"""Case files: what loads, and the errors a newcomer gets for what does not."""

import pytest

from evals.case import CaseError, load_cases, parse_wait


def _write(tmp_path, text):
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_case_loads_with_default_world(tmp_path):
    (case,) = load_cases([_write(tmp_path, "id: a\ntitle: t\nsteps:\n  - say: 你好\n")])
    assert case.world.customers[0].id == "c1" and case.steps[0].say == "你好"


def test_unknown_assertion_names_the_case_and_the_choices(tmp_path):
    path = _write(tmp_path, "id: a\ntitle: t\nsteps:\n  - say: 你好\n    expect:\n      - reply_has: [x]\n")
    with pytest.raises(CaseError, match="case a: .*reply_contains"):
        load_cases([path])


def test_step_with_two_actions_is_refused(tmp_path):
    with pytest.raises(CaseError, match="exactly one of"):
        load_cases([_write(tmp_path, "id: a\ntitle: t\nsteps:\n  - {say: 你好, wait: +1d}\n")])


def test_malformed_yaml_names_the_file(tmp_path):
    with pytest.raises(CaseError, match="case.yaml"):
        load_cases([_write(tmp_path, "id: [unclosed\n")])


def test_duplicate_ids_are_refused(tmp_path):
    text = "cases:\n  - {id: a, title: t, steps: [{say: x}]}\n  - {id: a, title: u, steps: [{say: y}]}\n"
    with pytest.raises(CaseError, match="duplicate case id"):
        load_cases([_write(tmp_path, text)])


def test_wait_reads_days_hours_and_time_of_day():
    delta, hhmm = parse_wait("+2d 10:00")
    assert delta.days == 2 and hhmm == (10, 0)
    assert parse_wait("+3h")[0].total_seconds() == 3 * 3600
