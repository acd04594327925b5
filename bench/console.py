"""How fast the console's pages load with a shop of 10,000+ customers.

Plays a few days of a busy shop through the real pipeline, adds 10,000 customers, serves the API and the console
with uvicorn on loopback, and opens every page in Debian's Chromium (Playwright) at 1280×800 and 390×844, logged
in. A page's load time is from navigation start until the last resource it fetched (its code chunks and every
API call) finished, then the next animation frame: what the operator waits for. Each page is opened --runs
times; prints the median and the worst per page and viewport.

    python bench/console.py [--runs 5] [--extra 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.console import shop as console_shop  # noqa: E402  (the browser tests' served shop)

VIEWPORTS = {"1280×800": {"width": 1280, "height": 800}, "390×844": {"width": 390, "height": 844}}
LOADED = """() => new Promise(resolve => requestAnimationFrame(() => {
  const ends = performance.getEntriesByType('resource').map(r => r.responseEnd);
  resolve(Math.max(0, ...ends, performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd));
}))"""


def pages(day: str) -> dict[str, str]:
    return {"会话工作台": "conversations", "待办任务": "tasks", "客户列表": "customers", "客户详情": "customers/bulk00042",
            "SOP 列表": "sops", "SOP 编辑器": "sops/new_customer_nurture", "模拟器": "simulator",
            "复盘列表": "reports", "复盘报告": f"reports/{day}", "知识库": "knowledge", "素材与标签": "library",
            "成员与审计": "people"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--extra", type=int, default=console_shop.EXTRA_CUSTOMERS, help="customers added in bulk")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    console_shop.EXTRA_CUSTOMERS = args.extra
    started = time.perf_counter()
    service, day = console_shop.build_shop(Path(tempfile.mkdtemp(prefix="sopagent-bench-console-")) / "home")
    served = console_shop.serve(service, day)
    with service.runtime.deps.engine.connect() as conn:
        from sqlalchemy import func, select

        from knowledge.tables import Customer
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar()
    print(f"shop: {customers} customers, ready in {time.perf_counter() - started:.1f} s; report day {day}")
    results: dict[tuple[str, str], list[float]] = {}
    try:
        with sync_playwright() as p:
            p.selectors.set_test_id_attribute("data-test")
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
            for size, viewport in VIEWPORTS.items():
                context = browser.new_context(viewport=viewport, locale="zh-CN")
                page = context.new_page()
                page.goto(f"{served.url}/console/#/login")
                page.get_by_test_id("username").fill(console_shop.ADMIN)
                page.get_by_test_id("password").fill(console_shop.ADMIN_PASSWORD)
                page.get_by_test_id("login").click()
                page.get_by_test_id("who").wait_for(state="attached")
                for name, route in pages(day.isoformat()).items():
                    for _ in range(args.runs):
                        page.goto("about:blank")
                        page.goto(f"{served.url}/console/#/{route}", wait_until="networkidle")
                        results.setdefault((name, size), []).append(page.evaluate(LOADED))
                context.close()
            browser.close()
    finally:
        served.stop()
    print(f"{'page':<10} {'viewport':<9} {'median ms':>9} {'max ms':>7}")
    for (name, size), times in results.items():
        print(f"{name:<10} {size:<9} {statistics.median(times):9.0f} {max(times):7.0f}")
    worst = max(max(t) for t in results.values())
    print(f"slowest page load: {worst:.0f} ms (goal < 1000 ms)")


if __name__ == "__main__":
    main()
