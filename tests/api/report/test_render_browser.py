"""The rendered report in a real browser (headless Chromium via Playwright) on a desktop and a phone screen.

A chart counts as drawn when its element screenshot has a clear share of pixels far from its background
colour and some saturated (series-coloured) pixels: text alone is grey, and an empty or broken SVG is flat.
Full-page screenshots are kept under tests/artifacts/report/ for people to look at.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from api.report.render import render_html
from tests.api.report.samples import empty_report, sample_report

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "report"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}

MIN_INK_SHARE = 0.01  # pixels clearly unlike the background (a line chart is mostly white space)
MIN_SERIES_SHARE = 0.005  # saturated pixels: bars, lines, dots (a legend alone stays below this)
FAR = 96  # sum of channel differences that counts as "clearly different"
SATURATED = 80  # max - min channel spread of a series colour


@dataclass
class Ink:
    background: tuple[int, int, int]
    ink_share: float
    series_share: float
    colours: int  # clearly distinct colours covering ≥ 0.1 % of the pixels, background included


def ink(png: bytes) -> Ink:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    total = image.width * image.height
    counts: list[tuple[int, tuple[int, int, int]]] = image.getcolors(maxcolors=total) or []
    background = max(counts)[1]

    def far(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
        return sum(abs(x - y) for x, y in zip(a, b, strict=True)) > FAR

    ink_px = sum(n for n, rgb in counts if far(rgb, background))
    series_px = sum(n for n, rgb in counts if max(rgb) - min(rgb) > SATURATED)
    distinct: list[tuple[int, int, int]] = []
    for n, rgb in sorted(counts, reverse=True):
        if n >= total / 1000 and all(far(rgb, seen) for seen in distinct):
            distinct.append(rgb)
    return Ink(background, ink_px / total, series_px / total, len(distinct))


@dataclass
class Loaded:
    name: str
    size: tuple[int, int]
    page: Page
    url: str
    requests: list[str]


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable, headless=True)
        yield browser
        browser.close()


def _load(browser: Browser, path: Path, name: str, size: tuple[int, int]) -> tuple[Any, Loaded]:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, device_scale_factor=1,
                                  java_script_enabled=False)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    url = path.as_uri()
    page.goto(url, wait_until="load")
    return context, Loaded(name, size, page, url, requests)


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def loaded(request: pytest.FixtureRequest, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(sample_report()), encoding="utf-8")
    context, page = _load(browser, path, request.param, VIEWPORTS[request.param])
    yield page
    context.close()


def test_full_page_screenshot_is_saved_as_an_artefact(loaded: Loaded) -> None:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = loaded.size
    target = ARTIFACTS / f"report-{loaded.name}-{width}x{height}.png"
    loaded.page.screenshot(path=str(target), full_page=True)
    with Image.open(target) as shot:
        assert shot.width == width and shot.height > height


def test_every_expected_chart_is_on_the_page(loaded: Loaded) -> None:
    report = sample_report()
    expected = ({f"funnel:{f.sop_id}" for f in report.metrics.funnels} | {f"trend:{t.metric}" for t in report.trends}
                | {"sends:by_mode"})
    found = loaded.page.eval_on_selector_all("[data-chart]", "els => els.map(e => e.dataset.chart)")
    assert sorted(found) == sorted(expected)


def test_every_chart_is_visible_with_a_non_zero_box(loaded: Loaded) -> None:
    charts = loaded.page.locator("[data-chart]")
    for i in range(charts.count()):
        chart = charts.nth(i)
        name = chart.get_attribute("data-chart")
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert chart.is_visible(), name
        assert box is not None and box["width"] >= 100 and box["height"] >= 40, (name, box)


def test_every_chart_has_drawn_pixels(loaded: Loaded) -> None:
    charts = loaded.page.locator("[data-chart]")
    blank = {}
    for i in range(charts.count()):
        chart = charts.nth(i)
        measured = ink(chart.screenshot(animations="disabled", caret="hide"))
        if not (measured.colours >= 2 and measured.ink_share >= MIN_INK_SHARE
                and measured.series_share >= MIN_SERIES_SHARE):
            blank[chart.get_attribute("data-chart")] = measured
    assert blank == {}


def test_page_loads_nothing_but_itself(loaded: Loaded) -> None:
    assert loaded.requests == [loaded.url]


def test_page_does_not_scroll_sideways(loaded: Loaded) -> None:
    width = loaded.page.evaluate("document.documentElement.scrollWidth")
    assert width <= loaded.size[0]


def test_empty_report_shows_placeholders_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text(render_html(empty_report()), encoding="utf-8")
    context, loaded = _load(browser, path, "empty", VIEWPORTS["phone"])
    try:
        placeholder = loaded.page.locator('[data-chart="sends:by_mode"]')
        assert placeholder.is_visible()
        assert ink(placeholder.screenshot()).colours >= 2
        assert loaded.requests == [loaded.url]
    finally:
        context.close()
