from pathlib import Path

from sop_graphs.loader import load_library
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
