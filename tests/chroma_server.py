"""Real Chroma servers for the tests that need them: a fresh database per use, dropped afterwards.

``SOPAGENT_TEST_CHROMA_URL`` names a server started with ``chroma run`` (``.ci/run`` starts one); without it those
tests skip with one line, except under ``CI=true`` where they fail. Each use gets its own Chroma database on that
server, so tests running in parallel (pytest-xdist) against one server never see each other's collections.

``ChromaProcess`` runs a private ``chroma run`` (the CLI of the installed chromadb) on a free loopback port, for the
tests that stop and restart a server; it needs no configuration."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from knowledge.vector_store import ChromaServer

ENV = "SOPAGENT_TEST_CHROMA_URL"
START_SECONDS = 60.0  # a bound on how long a server may take to answer its heartbeat, not a wait


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true, so the Chroma server tests must run)", pytrace=False)
    pytest.skip(reason)


def heartbeat(server: ChromaServer, timeout: float = 2.0) -> bool:
    """Whether the server answers its heartbeat now."""
    try:
        return httpx.get(f"{server.url}/api/v2/heartbeat", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _admin(server: ChromaServer) -> Any:
    import chromadb

    return chromadb.AdminClient(chromadb.Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host=server.host,
        chroma_server_http_port=server.port, chroma_server_ssl_enabled=server.ssl, anonymized_telemetry=False))


@pytest.fixture
def chroma_database() -> Iterator[Callable[[], ChromaServer]]:
    """A factory of fresh, empty Chroma databases: each call returns a ``ChromaServer`` naming a new one."""
    url = os.environ.get(ENV)
    if not url:
        _unavailable(f"Chroma server not configured: set {ENV} (e.g. http://127.0.0.1:8001, a `chroma run`)")
    server = ChromaServer.from_url(url)  # type: ignore[arg-type]
    if not heartbeat(server):
        _unavailable(f"Chroma server at {ENV} ({server.url}) not reachable")
    admin = _admin(server)
    made: list[str] = []

    def make() -> ChromaServer:
        name = f"sopagent-test-{secrets.token_hex(6)}"
        admin.create_database(name)
        made.append(name)
        return replace(server, database=name)

    yield make
    for name in made:
        admin.delete_database(name)


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaProcess:
    """``chroma run --path DATA --host 127.0.0.1 --port PORT``, started and stopped at will (same port each time)."""

    def __init__(self, data: Path, port: int | None = None) -> None:
        exe = Path(sys.executable).with_name("chroma")
        found = str(exe) if exe.exists() else shutil.which("chroma")
        if found is None:
            _unavailable("the chroma CLI (package chromadb) is not installed")
        self.exe = str(found)
        self.data = data
        self.port = port or free_port()
        self.server = ChromaServer("127.0.0.1", self.port)
        self.log = data.parent / f"chroma-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, data: Path | None = None) -> None:
        """Start the server (on ``data`` if given, else the same directory) and wait until it answers."""
        self.data = data or self.data
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([self.exe, "run", "--path", str(self.data), "--host", "127.0.0.1",
                                           "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while not heartbeat(self.server, timeout=1.0):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"chroma run on port {self.port} did not come up:\n{tail}")
            time.sleep(0.05)  # a poll interval while waiting for the heartbeat, not a wait for the server

    def stop(self) -> None:
        """Stop the server and wait until it has exited (its port refuses connections)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
