"""Reports of a suite run: console lines, JSON and a self-contained HTML page."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from evals.runner import CaseResult

_ENV = Environment(loader=PackageLoader("evals", "."), autoescape=select_autoescape(["html", "j2"]))


def console_lines(results: list[CaseResult]) -> list[str]:
    lines = []
    for r in sorted(results, key=lambda r: (r.id, r.repeat)):
        tag = f"{r.id}" + (f" #{r.repeat + 1}" if r.repeat else "")
        if r.passed:
            lines.append(f"PASS {tag} ({r.assertions} checks, {r.seconds:.2f}s)")
        elif r.error:
            lines.append(f"ERROR {tag}: {r.error.strip().splitlines()[0]}")
        else:
            assert r.failure is not None
            lines.append(f"FAIL {tag}: {r.failure['what']}\n     {r.failure['diff']}")
    return lines


def as_json(results: list[CaseResult], metrics: dict[str, Any], seconds: float, mode: str) -> str:
    return json.dumps({"mode": mode, "seconds": round(seconds, 2), "metrics": metrics,
                       "cases": [asdict(r) for r in results]}, ensure_ascii=False, indent=1)


def write_reports(results: list[CaseResult], metrics: dict[str, Any], seconds: float, mode: str,
                  html: Path | None, json_path: Path | None) -> None:
    if json_path is not None:
        json_path.write_text(as_json(results, metrics, seconds, mode), encoding="utf-8")
    if html is not None:
        page = _ENV.get_template("report.html.j2").render(
            results=sorted(results, key=lambda r: (r.passed, r.id)), metrics=metrics, seconds=seconds, mode=mode)
        html.write_text(page, encoding="utf-8")
