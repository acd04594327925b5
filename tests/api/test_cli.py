from pathlib import Path

from typer.testing import CliRunner

from api.cli import app

LIBRARY = Path(__file__).resolve().parents[2] / "sop_graphs" / "library"
runner = CliRunner()


def test_validate_passes_on_the_bundled_library():
    result = runner.invoke(app, ["sop", "validate", str(LIBRARY)])
    assert result.exit_code == 0 and "17 SOP(s) valid" in result.output


def test_validate_exits_non_zero_and_prints_file_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nname: x\nfamily: nurture\ngoal: g\ntriggers: [{on: manual}]\n"
                   "steps:\n  - {id: a, kind: message, text: hi, next: nope}\n", encoding="utf-8")
    result = runner.invoke(app, ["sop", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:7: [bad/a] unknown step 'nope'" in result.output


def test_graph_prints_mermaid_with_every_step():
    result = runner.invoke(app, ["sop", "graph", "complaint_handling", "--format", "mermaid"])
    assert result.exit_code == 0 and result.output.startswith("flowchart TD")
    assert "ask_order" in result.output and "escalate" in result.output


def test_graph_of_unknown_sop_is_a_clear_error():
    result = runner.invoke(app, ["sop", "graph", "no_such_sop"])
    assert result.exit_code == 2 and "unknown SOP" in result.output


def test_demo_runs_and_exits_zero(tmp_path):
    result = runner.invoke(app, ["demo", "--home", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "30 天汇总" in result.output and "重复投递：0 条" in result.output


def test_simulated_worker_resumes_its_saved_clock(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SOPAGENT_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "api.cli", "worker", "--start", "2026-11-23T00:00:00+00:00", "--until"]
    first = subprocess.run([*command, "2026-11-25T00:00:00+00:00"], env=env, capture_output=True, text=True,
                           cwd=LIBRARY.parents[1], timeout=120)
    second = subprocess.run([*command, "2026-11-24T00:00:00+00:00"], env=env, capture_output=True, text=True,
                            cwd=LIBRARY.parents[1], timeout=120)
    assert first.returncode == 0, first.stderr
    assert "simulated to 2026-11-25" in first.stdout
    assert second.returncode == 2 and "cannot go back" in second.stderr


def test_validate_refuses_a_yaml_alias_bomb_with_its_line(tmp_path):
    from tests.sop_graphs.test_validator import ALIAS_BOMB

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB, encoding="utf-8")
    result = runner.invoke(app, ["sop", "validate", str(bomb)])
    assert result.exit_code == 1 and f"{bomb}:2: [bomb] malformed YAML: anchors and aliases" in result.output


def test_kb_import_with_a_bad_mapping_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SOPAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOPAGENT_EMBEDDER", "hash")
    from knowledge.settings import get_settings

    get_settings.cache_clear()
    (tmp_path / "home").mkdir()
    (tmp_path / "p.csv").write_text("sku,name,price\nA1,霜,99\n", encoding="utf-8")
    (tmp_path / "m.yaml").write_text("fields: &f {sku: sku}\nvalues: *f\n", encoding="utf-8")
    try:
        result = runner.invoke(app, ["kb", "import", str(tmp_path / "p.csv"), "--kind", "products",
                                     "--mapping", str(tmp_path / "m.yaml")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "m.yaml:1: invalid YAML: anchors and aliases" in result.output.replace("\n", "")


def test_validating_a_shops_library_directory_uses_that_librarys_own_catalogue():
    tea = Path(__file__).resolve().parents[2] / "knowledge" / "tea_shop" / "library"
    result = runner.invoke(app, ["sop", "validate", str(tea)])
    assert result.exit_code == 0, result.output
    assert "4 SOP(s) valid" in result.output


def test_wecom_sync_without_credentials_says_what_to_set(tmp_path, monkeypatch):
    from knowledge.settings import get_settings

    monkeypatch.setenv("SOPAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOPAGENT_WECOM_CORP_ID", raising=False)
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["wecom", "sync"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "SOPAGENT_WECOM_CORP_ID" in result.output
