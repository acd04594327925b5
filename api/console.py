"""The operator console (a Vue single-page app built from ``console/``) served at ``/console``.

The built bundle ships inside the package (``api/console_dist``), so ``pip install`` needs no Node and nothing
loads from a CDN. Routing is client-side (``/console/#/sops``): the server only hands out files."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

BUNDLE = Path(__file__).resolve().parent / "console_dist"
MISSING = """<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>sopagent 控制台</title>
<body><p>控制台尚未构建：在 console/ 下运行 <code>npm ci &amp;&amp; npm run build</code>。</p></body></html>"""


def mount_console(app: FastAPI, directory: Path | None = None) -> None:
    """Serve the console at /console (index.html for the app, hashed assets cached for a year)."""
    root = directory or BUNDLE
    index = root / "index.html"

    @app.get("/", include_in_schema=False)
    def _home() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    @app.get("/console", include_in_schema=False)
    def _console_slash() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    @app.get("/console/", include_in_schema=False)
    def _console() -> HTMLResponse:
        if not index.is_file():
            return HTMLResponse(MISSING, status_code=503)
        return HTMLResponse(index.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})

    if (root / "assets").is_dir():
        app.mount("/console/assets", _Immutable(directory=root / "assets"), name="console-assets")


class _Immutable(StaticFiles):
    """Hashed file names never change content: let browsers keep them."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response
