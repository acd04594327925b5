"""The API's OpenAPI document without a running server: the console's TypeScript types are generated from it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from knowledge.settings import Settings


def document() -> dict[str, Any]:
    """The OpenAPI document of the app as ``sopagent serve`` builds it (over a throwaway home)."""
    from api.app import create_app
    from api.service import Service

    with tempfile.TemporaryDirectory(prefix="sopagent-openapi-") as home:
        service = Service.build(Settings(home=Path(home), embedder="hash", channel="sandbox", operator_token="x"))
        try:
            return create_app(service, run_pump=False).openapi()
        finally:
            service.stop()


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
