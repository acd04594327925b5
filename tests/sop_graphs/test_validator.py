from pathlib import Path

from sop_graphs.loader import load_library, load_sop_text
from sop_graphs.validator import validate

LIBRARY = Path(__file__).resolve().parents[2] / "sop_graphs" / "library"

BROKEN = """\
id: broken
name: 坏的 SOP
family: nurture
goal: test
triggers:
  - on: schedule
    cron: "99 * * * *"
steps:
  - id: hello
    kind: message
    material: no_such_material
    next: nowhere
  - id: orphan
    kind: tag
    add: [不存在的标签]
  - id: loop_a
    kind: branch
    cases:
      - {when: "'敏感肌' in tags", goto: loop_b}
    default: loop_b
  - id: loop_b
    kind: coupon
    campaign: no_campaign
    text: "hi {nobody}"
    next: loop_a
  - id: orphan
    kind: end
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    library, problems = load_library([path], LIBRARY)
    return [str(p) for p in problems + validate(library)]


def test_bundled_library_is_valid_and_covers_every_family():
    library, problems = load_library([LIBRARY], LIBRARY)
    assert problems + validate(library) == []
    assert len(library.sops) >= 14
    families = {spec.family for spec in library.sops.values()}
    assert families >= {"nurture", "tagging", "reactivation", "repurchase", "interest_followup", "behaviour",
                        "complaint", "group_ops", "launch", "promotion", "livestream", "referral", "moments",
                        "conversion"}


def test_every_problem_is_reported_with_file_and_line(tmp_path):
    problems = "\n".join(_problems(tmp_path, BROKEN))
    for expected in ("broken.yaml:12: [broken/hello] unknown step 'nowhere'",
                     "broken.yaml:7: [broken] bad schedule expression",
                     "broken.yaml:11: [broken/hello] unknown material",
                     "unreachable", "loop with no wait or ask", "unknown tag '不存在的标签'",
                     "unknown coupon campaign 'no_campaign'", "{nobody}", "duplicate step id 'orphan'"):
        assert expected in problems, expected


def test_malformed_yaml_names_the_line(tmp_path):
    problems = _problems(tmp_path, "id: x\nsteps: [\n  - a\n")
    assert len(problems) == 1 and "malformed YAML" in problems[0] and "broken.yaml:" in problems[0]


def test_type_errors_point_at_the_field(tmp_path):
    text = BROKEN.replace("kind: tag\n    add: [不存在的标签]", "kind: wait\n    for: soon")
    assert any("broken.yaml:15:" in p and "duration" in p for p in _problems(tmp_path, text))


TYPO_INTENT = """\
id: typo
name: 投诉
family: complaint
goal: test
triggers:
  - on: message_intent
    intents: [complian]
steps:
  - id: done
    kind: end
"""


def test_trigger_naming_an_unknown_intent_is_an_error_with_its_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, TYPO_INTENT)
    assert any(":7:" in p and "unknown intent 'complian'" in p and "complaint" in p for p in problems)


def test_a_shop_of_another_category_loads_as_data_only() -> None:
    tea = Path(__file__).resolve().parents[2] / "knowledge" / "tea_shop" / "library"
    library, problems = load_library([tea], tea)
    assert not problems + validate(library)
    assert library.catalog.persona.advisor_title != "护肤顾问" and "skin_type" not in library.catalog.profile.facts


def test_intent_reply_naming_an_unknown_template_is_an_error(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(LIBRARY, tmp_path / "lib")
    intents = tmp_path / "lib" / "intents.yaml"
    intents.write_text(intents.read_text("utf-8").replace("reply: bot_identity", "reply: bot_identiy"), "utf-8")
    library, problems = load_library([tmp_path / "lib"], tmp_path / "lib")
    assert any("unknown template 'bot_identiy'" in str(p) and "bot_identity" in str(p)
               for p in problems + validate(library))


def test_a_shop_library_without_a_template_uses_the_bundled_one() -> None:
    from sop_graphs.render import reply_text
    from sop_graphs.spec import Catalog

    assert "合并在同一个包裹" in reply_text(Catalog(), "orders_one_parcel", count=2, tracking_no="SF1")


# -- bounded YAML: the one loader every operator/shop YAML goes through --------------------------------

ALIAS_BOMB = "id: bomb\n" + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9) if prev else ','.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True))


def test_yaml_alias_bomb_is_refused_with_its_line(tmp_path):
    assert len(ALIAS_BOMB) < 400  # a billion-laughs document: 9^9 'lol's once expanded
    (problem,) = _problems(tmp_path, ALIAS_BOMB)
    assert "broken.yaml:2: [broken] malformed YAML: anchors and aliases" in problem
    assert "not allowed" in problem and "write the value out in full" in problem


def test_recursive_alias_is_refused_not_a_crash(tmp_path):
    (problem,) = _problems(tmp_path, "name: x\nid: &a [*a]\n")
    assert "broken.yaml:2:" in problem and "anchors and aliases" in problem


def test_merge_key_from_an_anchor_is_refused(tmp_path):
    (problem,) = _problems(tmp_path, "base: &b {family: nurture}\nid: x\nmore:\n  <<: *b\n")
    assert "broken.yaml:1:" in problem and "anchors and aliases" in problem


def test_nesting_deeper_than_the_cap_is_refused_with_its_line(tmp_path):
    from knowledge.yaml_lines import MAX_DEPTH

    (problem,) = _problems(tmp_path, "id: x\nname: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "broken.yaml:2:" in problem and f"nested deeper than {MAX_DEPTH} levels" in problem


def test_a_document_with_too_many_values_is_refused(tmp_path, monkeypatch):
    from knowledge import yaml_lines

    monkeypatch.setattr(yaml_lines, "MAX_NODES", 50)
    _, _, (problem,) = load_sop_text("id: x\ntags: [" + ", ".join(["t"] * 60) + "]\n", "big.yaml")
    assert str(problem).startswith("big.yaml:2: [sop] malformed YAML: more than 50 values")


def test_values_yaml_cannot_construct_are_problems_with_their_line(tmp_path):
    for text, reason in (("id: x\nversion: 1" + "0" * 5000 + "\n", "integer out of range"),
                         ("id: x\nversion: 9223372036854775808\n", "integer out of range"),
                         ("id: x\nstarts: 2026-02-30\n", "invalid timestamp value '2026-02-30'"),
                         ('id: x\nname: "\\ud800"\n', "invalid Unicode"),
                         ("id: x\nname: !!int nope\n", "invalid int value 'nope'"),
                         ("id: x\nname: a\x00b\n", "unacceptable character #x0000")):
        (problem,) = _problems(tmp_path, text)
        assert "broken.yaml:2:" in problem and reason in problem, (text[:40], problem)


def test_library_files_are_read_with_the_same_bounds(tmp_path):
    import shutil

    shutil.copytree(LIBRARY, tmp_path / "lib")
    (tmp_path / "lib" / "tags.yaml").write_text("skin: &s {label: 肤质, tags: [干皮]}\nmore: *s\n", "utf-8")
    _, problems = load_library([tmp_path / "lib"], tmp_path / "lib")
    assert any(p.file.endswith("tags.yaml") and p.line == 1 and "anchors and aliases" in p.reason
               for p in problems)


def test_eval_case_files_are_read_with_the_same_bounds(tmp_path):
    import pytest

    from evals.case import CaseError, load_cases

    (tmp_path / "case.yaml").write_text("id: a\ntitle: &t x\nsteps: [{say: *t}]\n", "utf-8")
    with pytest.raises(CaseError, match=r"case\.yaml:2: invalid YAML: anchors and aliases"):
        load_cases([tmp_path / "case.yaml"])


# -- templates: plain {name} placeholders only -----------------------------------------------------------

PADDED = """\
id: padded
name: 问候
family: nurture
goal: test
triggers: [{on: manual}]
steps:
  - id: hello
    kind: message
    text: "您好 {name:>999999999}"
"""


def test_template_with_a_format_spec_fails_validation_with_its_line(tmp_path):
    assert _problems(tmp_path, PADDED.replace(":>999999999", "")) == []
    (problem,) = _problems(tmp_path, PADDED)
    assert "broken.yaml:9: [padded/hello] bad template: {name:>999999999} is not a plain {name} placeholder" \
        in problem


def test_template_attribute_index_conversion_and_positional_fields_fail_validation():
    import pytest

    from sop_graphs.render import placeholders

    assert placeholders("您好 {name}，{{不是变量}}") == {"name"}
    for template in ("{name.__class__}", "{name[0]}", "{name!r}", "{}", "{0}", "{name:{shop}}"):
        with pytest.raises(ValueError, match="not a plain"):
            placeholders(template)


def test_reply_template_with_a_format_spec_fails_validation(tmp_path):
    import shutil

    shutil.copytree(LIBRARY, tmp_path / "lib")
    replies = tmp_path / "lib" / "replies.yaml"
    replies.write_text(replies.read_text("utf-8") + 'padded: "{brand:>999999999}"\n', "utf-8")
    library, problems = load_library([tmp_path / "lib"], tmp_path / "lib")
    assert any(p.file == "replies.yaml" and p.where == "padded" and "not a plain {name} placeholder" in p.reason
               for p in problems + validate(library))


def test_rendering_never_applies_a_format_spec_or_attribute_access():
    from sop_graphs.render import fill, reply_text
    from sop_graphs.spec import Catalog

    assert fill("hi {name:>999999999}!", {"name": "林"}) == "hi 林!"
    assert fill("{name.__class__.__mro__}{name[0]}{0}{}|{name!r}", {"name": "林"}) == "|林"
    catalog = Catalog(replies={"greet": "{brand:>999999999}{advisor.upper}"})
    assert reply_text(catalog, "greet") == catalog.persona.brand


def test_numbers_render_without_a_format_spec():
    from sop_graphs.render import fill

    assert fill("¥{price}，共 {count} 件，折扣 {rate}", {"price": 199.0, "count": 3, "rate": 0.1 + 0.2}) \
        == "¥199，共 3 件，折扣 0.3"


def test_an_unknown_step_kind_is_reported_at_its_kind_line():
    from sop_graphs.loader import load_sop_text

    text = "id: x\nname: X\nfamily: nurture\ngoal: g\ntriggers:\n  - on: customer_added\nsteps:\n  - id: a\n    kind: wiat\n"
    _, _, problems = load_sop_text(text, "x.yaml", "x")
    assert [p.line for p in problems] == [9]
