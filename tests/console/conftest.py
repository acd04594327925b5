"""The console's browser tests: one served shop per test process, Chromium through Playwright, a page per test
that is logged in, and screenshots of each page as test artefacts (tests/artifacts/console/)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.shop import ADMIN, ADMIN_PASSWORD, ServedShop, build_shop, serve

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, chromium_executable: str) -> Iterator[ServedShop]:
    service, day = build_shop(tmp_path_factory.mktemp("console") / "home")
    served = serve(service, day)
    yield served
    served.stop()


@pytest.fixture(scope="session")
def browser(chromium_executable: str):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        p.selectors.set_test_id_attribute("data-test")
        browser = p.chromium.launch(executable_path=chromium_executable, headless=True)
        yield browser
        browser.close()


def log_in(page, shop: ServedShop, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Through the login page (tests of logging in; the server allows 10 attempts a minute per name)."""
    page.goto(f"{shop.url}/console/#/login")
    page.get_by_test_id("username").fill(username)
    page.get_by_test_id("password").fill(password)
    page.get_by_test_id("login").click()
    page.get_by_test_id("who").wait_for(state="attached")


_TOKENS: dict[tuple[str, str], str] = {}


def session_token(shop: ServedShop, username: str, password: str) -> str:
    """One login per person and test process; pages start with its token in their session."""
    if (shop.url, username) not in _TOKENS:
        response = httpx.post(f"{shop.url}/api/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        _TOKENS[(shop.url, username)] = response.json()["token"]
    return _TOKENS[(shop.url, username)]


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_page(browser, shop: ServedShop, size: str = "desktop", user: tuple[str, str] = (ADMIN, ADMIN_PASSWORD)):  # type: ignore[no-untyped-def]
    """A new logged-in page whose browser errors are collected in ``page.errors``."""
    context = browser.new_context(viewport=VIEWPORTS[size], locale="zh-CN")
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    token = session_token(shop, *user)
    context.add_init_script(f"sessionStorage.getItem('sopagent.token') || sessionStorage.setItem('sopagent.token', {token!r})")
    page.goto(f"{shop.url}/console/")
    page.get_by_test_id("who").wait_for(state="attached")
    # the landing route has settled (its lazy chunk loaded): a test's own navigation cannot be overtaken by it
    page.wait_for_url("**/#/conversations")
    page.get_by_test_id("attention-list").wait_for(state="attached")
    return page


@pytest.fixture
def page(browser, shop: ServedShop):  # type: ignore[no-untyped-def]
    page = open_page(browser, shop)
    yield page
    page.context.close()


@pytest.fixture
def shot() -> Callable[..., Path]:
    def save(page, name: str, size: str = "desktop") -> Path:  # type: ignore[no-untyped-def]
        path = ARTIFACTS / size / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path
    return save
