"""The console is served from the bundle inside the package, and its API types follow the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.console import BUNDLE
from api.openapi import document, dumps

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def test_the_console_page_and_every_asset_it_names_are_served(client) -> None:
    page = client.get("/console/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assets = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page.text)
    assert assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "immutable" in response.headers["cache-control"]


def test_nothing_is_loaded_from_another_host(client) -> None:
    page = client.get("/console/").text
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    for script in BUNDLE.glob("assets/*.css"):
        assert "url(http" not in script.read_text(encoding="utf-8"), script.name


def test_the_root_and_the_bare_path_lead_to_the_console(client) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/console/"
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/"


def test_a_missing_bundle_says_how_to_build_it(service, tmp_path) -> None:
    service.settings.console_dir = tmp_path / "nothing"
    response = TestClient(create_app(service, run_pump=False)).get("/console/")
    assert response.status_code == 503 and "npm run build" in response.text


def test_the_consoles_openapi_document_is_todays(tmp_path) -> None:
    committed = (CONSOLE / "openapi.json").read_text(encoding="utf-8")
    assert committed == dumps(document()), "run: sopagent openapi --out console/openapi.json && (cd console && npm run gen:api)"
