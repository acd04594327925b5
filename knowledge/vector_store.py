"""Where the dense index lives: an embedded Chroma directory, or a Chroma server that several processes share.

A ``ChromaStore`` is either a ``Path`` (a ``chromadb.PersistentClient`` directory, the embedded default under
``<home>/chroma``, for one process) or a ``ChromaServer`` (a server started with ``chroma run``, named by
``Settings.chroma_url`` / ``SOPAGENT_CHROMA_URL``, e.g. ``http://127.0.0.1:8001``; every API and worker process of
one shop uses the same one). ``chroma_store`` turns what a caller holds (a Path, a URL string, a ChromaServer) into
a store; ``open_client`` makes the chromadb client of a store. ``knowledge.retriever.Retriever`` takes any of them.

A server URL is ``http(s)://host:port`` and nothing more: the port is required (``chroma run`` listens on 8000
unless told otherwise), and a path, query, fragment or credentials are refused with the reason, not ignored.
``ChromaServer`` also carries a tenant and a database (Chroma's own namespaces; the defaults unless a caller, such
as the tests, gives each user its own).

chromadb's HTTP client sends its requests without a timeout and keeps every client it ever built for the life of
the process. So ``open_client`` first asks the server's heartbeat with a short timeout (a server that is down then
costs a refused or timed-out probe, and no client is built for it), and bounds every request of the client it
builds (``CONNECT_TIMEOUT``, ``REQUEST_TIMEOUT``): a server that hangs cannot hang a customer's turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # chromadb is imported only when a client is made: importing it costs seconds
    from chromadb.api import ClientAPI

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"
CONNECT_TIMEOUT = 2.0  # seconds to reach the server
REQUEST_TIMEOUT = 10.0  # seconds for any one request (a query is milliseconds; an upsert of 1000 vectors, more)


@dataclass(frozen=True)
class ChromaServer:
    """A Chroma server (``chroma run``) and the tenant/database of it that this shop's collections live in."""

    host: str
    port: int
    ssl: bool = False
    tenant: str = DEFAULT_TENANT
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_url(cls, url: str) -> ChromaServer:
        """The server of ``http(s)://host:port``; ``ValueError`` saying what is wrong with any other URL."""
        text = url.strip()
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"Chroma server URL {text!r}: the scheme must be http or https, "
                             "e.g. http://127.0.0.1:8001")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"Chroma server URL {text!r}: credentials in the URL are not supported")
        if not parts.hostname:
            raise ValueError(f"Chroma server URL {text!r}: no host, e.g. http://127.0.0.1:8001")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"Chroma server URL {text!r}: the port must be a number from 1 to 65535") from None
        if port is None or port == 0:
            raise ValueError(f"Chroma server URL {text!r}: give the port (chroma run listens on 8000 unless "
                             "given --port), e.g. http://127.0.0.1:8000")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"Chroma server URL {text!r}: give only scheme://host:port (no path, query or "
                             "fragment; the client adds Chroma's /api/v2 itself)")
        return cls(parts.hostname, port, scheme == "https")

    @property
    def url(self) -> str:
        """``scheme://host:port`` (what ``from_url`` reads back)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}"

    def __str__(self) -> str:
        namespace = "" if (self.tenant, self.database) == (DEFAULT_TENANT, DEFAULT_DATABASE) else \
            f" ({self.tenant}/{self.database})"
        return self.url + namespace


ChromaStore = Path | ChromaServer


def chroma_store(location: Path | str | ChromaServer) -> ChromaStore:
    """A store from a Path (embedded), a ``ChromaServer``, or a string: an ``http(s)://`` URL names a server
    (checked as ``ChromaServer.from_url``), anything else is a directory."""
    if isinstance(location, ChromaServer | Path):
        return location
    if "://" in location:
        return ChromaServer.from_url(location)
    return Path(location)


def open_client(store: ChromaStore) -> ClientAPI:
    """The chromadb client of ``store``: a ``PersistentClient`` for a Path, an ``HttpClient`` for a server (after a
    bounded heartbeat probe; raises when the server does not answer). Telemetry is off either way."""
    if isinstance(store, Path):
        import chromadb

        return chromadb.PersistentClient(path=str(store), settings=chromadb.Settings(anonymized_telemetry=False))
    import httpx

    timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)
    httpx.get(f"{store.url}/api/v2/heartbeat", timeout=timeout).raise_for_status()
    import chromadb  # after the probe: a server that is down costs no import

    # a fresh Settings each time: HttpClient writes the host and port into the object it is given
    client = chromadb.HttpClient(host=f"[{store.host}]" if ":" in store.host else store.host, port=store.port,
                                 ssl=store.ssl, tenant=store.tenant, database=store.database,
                                 settings=chromadb.Settings(anonymized_telemetry=False))
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):  # chromadb builds it with timeout=None; no setting reaches it
        session.timeout = timeout
    return client
