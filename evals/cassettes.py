"""LLM cassettes: chat-completion responses recorded from live runs, replayed by request hash.

The key is a sha256 of the request's model, messages, tools, tool choice and response format, so a
changed prompt or schema misses its cassette instead of replaying a stale answer. A missing cassette
is recorded (case and step) and answered with HTTP 599, which the runner reports as a clear error.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import httpx

KEY_FIELDS = ("model", "messages", "tools", "tool_choice", "response_format")


def request_key(body: dict[str, Any]) -> str:
    material = {k: body.get(k) for k in KEY_FIELDS}
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class CassetteTransport(httpx.BaseTransport):
    """Replays (or with ``inner``, records) chat completions for one case; counts calls and tokens."""

    def __init__(self, path: Path, inner: httpx.BaseTransport | None = None) -> None:
        self.path = path
        self.inner = inner
        self.tape: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        self.step = 0
        self.missing: list[tuple[int, str]] = []
        self.calls = 0
        self.tokens = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        key = request_key(body)
        with self._lock:
            self.calls += 1
        if self.inner is not None:
            response = self.inner.handle_request(request)
            response.read()
            if response.status_code == 200:
                with self._lock:
                    self.tape[key] = response.json()
            data = response.json() if response.status_code == 200 else None
        else:
            data = self.tape.get(key)
            if data is None:
                with self._lock:
                    self.missing.append((self.step, key))
                return httpx.Response(599, json={"error": {"message": f"no cassette for request {key[:12]}"}})
        if data is not None:
            with self._lock:
                self.tokens += int((data.get("usage") or {}).get("total_tokens", 0))
            return httpx.Response(200, json=data)
        return response

    def save(self) -> None:
        if self.inner is not None and self.tape:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.tape, ensure_ascii=False, indent=1, sort_keys=True),
                                 encoding="utf-8")
