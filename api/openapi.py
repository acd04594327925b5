"""The API's OpenAPI document without a running server: the console's TypeScript types are generated from it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

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


def inlined_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` written in place: a body documented through ``openapi_extra``
    sits inside the OpenAPI document, where ``#/$defs/...`` would point nowhere."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node
    return resolve(schema)  # type: ignore[no-any-return]


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
