"""Hybrid retrieval over products, FAQ, policy clauses and promotions.

Dense: Chroma (``embedding_function=None``, our own vectors, one collection per kind, named
``<kind>-<embedder>``). Lexical: jieba + BM25. The two rankings are fused with reciprocal rank fusion
(RRF), which needs no score calibration between them. Orders and shipments are never embedded: they
are read by id from SQL, scoped to one customer (see ``agent.tools``).

Where the vectors live is the retriever's ``store`` (``knowledge.vector_store``): a directory for the
embedded ``PersistentClient`` (one process), or a Chroma server (``SOPAGENT_CHROMA_URL``) that every
API and worker process of the shop shares. Each process keeps its own BM25 index; the collections are
shared, so ``sync`` only adds, replaces and removes vectors by document id and content digest (never
drops a collection), and after writing reads the catalogue again and writes again if it moved on
meanwhile: two processes syncing at once leave the newer catalogue, whichever writes last.

The dense side may fail (a server down or unreachable, a collection dropped by someone else); a
customer's turn never does because of it. ``search`` then ranks by BM25 alone and ``nearest`` finds
nothing, with one log line per outage; for ``retry_seconds`` no call goes to the store, then the next
query tries again, first bringing the collection in line with the catalogue (a collection dropped or a
server restarted empty is refilled from the SQL-cached vectors), and logs that it is back.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from knowledge.embeddings import Embedder, cached_passages, digest
from knowledge.lexical import LexicalIndex, generic_nouns, nouns, shares_run, synonyms
from knowledge.tables import Document, Product, Promotion
from knowledge.vector_store import ChromaServer, ChromaStore, chroma_store, open_client

SEARCH_KINDS = ("products", "faq", "policy", "promotions")
RRF_K = 60
SYNC_ROUNDS = 3  # writes of one sync at most, while other processes keep changing the catalogue

log = logging.getLogger("sopagent.retrieval")
T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    kind: str
    id: str
    title: str
    text: str
    score: float
    lexical: bool = False  # shares real words with the query: a grounded match, not only a near vector


@dataclass(frozen=True)
class _Doc:
    id: str
    title: str
    text: str


def corpus(engine: Engine, kind: str) -> list[_Doc]:
    """The retrievable documents of one kind, as text built from the SQL rows."""
    with engine.connect() as conn:
        if kind == "products":
            rows = conn.execute(select(Product.__table__).where(Product.__table__.c.status != "off_sale")).mappings()
            return [_Doc(r["sku"], r["name"], _product_text(dict(r))) for r in rows]
        if kind == "promotions":
            rows = conn.execute(select(Promotion.__table__)).mappings()
            return [_Doc(r["id"], r["title"], f"{r['title']}：{r['description']}") for r in rows]
        rows = conn.execute(select(Document.__table__).where(Document.__table__.c.kind == kind)).mappings()
        return [_Doc(r["id"], r["title"], f"{r['title']}\n{r['text']}") for r in rows]


def _product_text(r: dict[str, Any]) -> str:
    """What a product is found by: name, codes, aliases, category, description, who it suits, usage, specs."""
    specs = "｜".join(f"{k}：{v}" for k, v in (r.get("specs") or {}).items())
    aliases = " ".join(r.get("aliases") or [])
    return (f"{r['name']}｜{r['sku']}｜{r.get('model') or ''}｜{aliases}｜{r['category']}｜{r['description']}"
            f"｜适合：{r['suitable_for']}｜用法：{r['usage']}｜{specs}")


class Retriever:
    """Searches one kind at a time; ``sync`` brings the indexes in line with the SQL tables.

    ``store``: a directory (embedded Chroma), an ``http(s)://host:port`` URL or a ``ChromaServer`` (a shared Chroma
    server); see the module docstring for what happens when it cannot be used and ``retry_seconds``."""

    def __init__(self, engine: Engine, store: Path | str | ChromaServer, embedder: Embedder, dense_k: int = 20,
                 *, retry_seconds: float = 5.0) -> None:
        self.engine = engine
        self.embedder = embedder
        self.dense_k = dense_k
        self.store: ChromaStore = chroma_store(store)
        self.retry_seconds = retry_seconds
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._ready: set[str] = set()  # kinds whose collection this process has brought in line with SQL
        self._docs: dict[str, dict[str, _Doc]] = {}
        self._lexical: dict[str, LexicalIndex] = {}
        self._corpus_text: dict[str, str] = {}
        self._name_text: dict[str, str] = {}
        self._lock = threading.RLock()  # one sync at a time
        self._open_lock = threading.Lock()  # one client, one lookup per collection
        self._health_lock = threading.Lock()
        self._retry_at = 0.0  # time.monotonic() before which the store is not called
        self._failing = False

    def _collection(self, kind: str) -> Any:
        """The Chroma collection of ``kind``, looked up once (not on every query)."""
        with self._open_lock:
            if kind not in self._collections:
                if self._client is None:  # opened on first use: importing Chroma costs seconds a worker may not need
                    self._client = open_client(self.store)
                self._collections[kind] = self._client.get_or_create_collection(
                    f"{kind}-{self.embedder.name}", embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}})
            return self._collections[kind]

    def _dense(self, kind: str, use: Callable[[Any], T]) -> T | None:
        """``use(collection of kind)``, the collection first brought in line with SQL if this process has not yet
        (or it was dropped); None while the store cannot be used (logged once per outage)."""
        if time.monotonic() < self._retry_at:
            return None
        try:
            try:
                result = self._use(kind, use)
            except Exception as exc:
                if not _gone(exc):
                    raise
                # dropped, perhaps recreated, by another process (or the server lost its data): look it up again
                self._forget(kind)
                result = self._use(kind, use)
        except Exception as exc:  # noqa: BLE001 — whatever the store says, the customer gets the lexical ranking
            self._forget(kind)
            self._unusable(exc)
            return None
        self._usable()
        return result

    def _use(self, kind: str, use: Callable[[Any], T]) -> T:
        if kind not in self._ready:
            with self._lock:
                if kind not in self._ready:
                    self._fill(kind)
        return use(self._collection(kind))

    def _fill(self, kind: str) -> None:
        """Write the vectors of ``kind`` that are missing or stale, drop removed ones; then read the catalogue again
        and repeat if another process changed it meanwhile (so the newer catalogue wins, whoever writes last)."""
        if kind not in self._docs:
            self._index_words(kind, corpus(self.engine, kind))
        docs = list(self._docs[kind].values())
        for _ in range(SYNC_ROUNDS):
            self._write(self._collection(kind), docs)
            latest = corpus(self.engine, kind)
            if _digests(latest) == _digests(docs):
                break
            docs = latest
            self._index_words(kind, docs)
        self._ready.add(kind)

    def _write(self, col: Any, docs: Sequence[_Doc]) -> None:
        existing = col.get(include=["metadatas"])
        have = {i: (m or {}).get("digest") for i, m in zip(existing["ids"], existing["metadatas"], strict=True)}
        wanted = _digests(docs)
        stale = [i for i in have if i not in wanted]
        if stale:
            col.delete(ids=stale)
        changed = [d for d in docs if have.get(d.id) != wanted[d.id]]
        for start in range(0, len(changed), 1000):
            chunk = changed[start:start + 1000]
            vectors = cached_passages(self.engine, self.embedder, [d.text for d in chunk])
            col.upsert(ids=[d.id for d in chunk], embeddings=vectors,
                       metadatas=[{"digest": wanted[d.id], "title": d.title} for d in chunk])

    def _forget(self, kind: str) -> None:
        with self._open_lock:
            self._collections.pop(kind, None)
        self._ready.discard(kind)

    def _unusable(self, exc: Exception) -> None:
        with self._health_lock:
            self._retry_at = time.monotonic() + self.retry_seconds
            first = not self._failing
            self._failing = True
        if first:
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            log.warning("vector store %s unusable (%s: %s): ranking by words only, trying again every %g s",
                        self.store, type(exc).__name__, reason, self.retry_seconds)

    def _usable(self) -> None:
        if self._failing:
            with self._health_lock:
                back, self._failing = self._failing, False
            if back:
                log.warning("vector store %s answers again: dense ranking is back", self.store)

    def _index_words(self, kind: str, docs: list[_Doc]) -> None:
        self._docs[kind] = {d.id: d for d in docs}
        self._corpus_text[kind] = " ".join(f"{d.title} {d.text}" for d in docs).casefold()
        # what names a document: its title, and for a product its codes, aliases and category too
        self._name_text[kind] = "\n".join(
            d.title + (" " + " ".join(d.text.split("｜")[1:5]) if kind == "products" else "")
            for d in docs).casefold()
        # the title counts twice for BM25: a shopper naming a product means that product
        self._lexical[kind] = LexicalIndex([d.id for d in docs], [f"{d.title} {d.text}" for d in docs])

    def sync(self, kinds: Iterable[str] = SEARCH_KINDS) -> dict[str, int]:
        """Embed new or changed documents (cached by content hash), drop removed ones, rebuild BM25. The counts are
        the catalogue's documents per kind; a vector store that cannot be written is logged and filled later."""
        counts = {}
        with self._lock:
            for kind in kinds:
                docs = corpus(self.engine, kind)
                self._index_words(kind, docs)  # first: BM25 answers even when the vector store cannot
                self._ready.discard(kind)
                self._dense(kind, lambda _col: None)  # fills the collection (see _fill)
                counts[kind] = len(self._docs[kind])
        return counts

    def indexed(self, kind: str) -> int:
        """How many documents of ``kind`` the vector index holds (0 while the vector store cannot be used)."""
        return self._dense(kind, lambda col: int(col.count())) or 0

    def unknown_nouns(self, query: str, kind: str) -> list[str]:
        """Chinese nouns of ``query`` that no document of ``kind`` contains ("美白牙膏多少钱" → 牙膏, "有香水吗 想送
        女朋友当礼物" → 香水). Generic shopping nouns (``generic_nouns.txt``) never count; whether the question names
        something carried anyway ("护颈仪压不压脖子") is the caller's to decide."""
        if kind not in self._docs:
            self.sync([kind])
        index = self._lexical.get(kind)
        if index is None or not self._docs[kind]:
            return []
        corpus = self._corpus_text.get(kind, "")
        known = synonyms()

        def carried(word: str) -> bool:  # the word, or its stem ("精华液" → 精华), is in the catalogue
            return word in known or word in corpus or (len(word) >= 3 and word[:-1] in corpus)

        return [w for w in nouns(query) if w not in generic_nouns() and not carried(w)]

    def names_a_document(self, query: str, kind: str, run: int = 3) -> bool:
        """Whether ``query`` names a document of ``kind`` by ``run`` or more characters of its name, codes, aliases
        or category ("扫地机" in 禾暖扫地机器人, "泡脚桶" an alias); two shared characters ("美白") name nothing."""
        if kind not in self._docs:
            self.sync([kind])
        return shares_run(re.sub(r"\s+", "", query.casefold()), self._name_text.get(kind, ""), run)

    def nearest(self, query: str, kinds: tuple[str, ...], vector: np.ndarray | None = None,
                k: int = 8) -> list[Hit]:
        """The ``k`` documents of ``kinds`` nearest in meaning, best first, each scored by the cosine similarity
        of the sentence vectors (``lexical`` when it also shares real words with the query); empty with a
        non-semantic embedder (its scores mean nothing)."""
        if not getattr(self.embedder, "semantic", False) or not query.strip():
            return []
        vector = self.embedder.query(query) if vector is None else vector
        hits: list[Hit] = []
        for kind in kinds:
            if kind not in self._docs:
                self.sync([kind])
            docs = self._docs[kind]
            if not docs:
                continue
            result = self._query(kind, vector, min(k, len(docs)), ["distances"])
            if result is None:  # the vector store cannot be used: nothing is near
                continue
            index = self._lexical[kind]
            terms = index.query_terms(query)
            hits += [Hit(kind, i, docs[i].title, docs[i].text, 1.0 - float(d), index.grounded(terms, i))
                     for i, d in zip(result["ids"][0], result["distances"][0], strict=True) if i in docs]
        return sorted(hits, key=lambda h: -h.score)[:k]

    def _query(self, kind: str, vector: np.ndarray, n: int, include: list[str]) -> dict[str, Any] | None:
        return self._dense(kind, lambda col: col.query(query_embeddings=[vector], n_results=n, include=include))

    def closest(self, query: str, kinds: tuple[str, ...], vector: np.ndarray | None = None) -> tuple[Hit, float] | None:
        """The single nearest document of ``kinds`` with its similarity (see ``nearest``)."""
        hits = self.nearest(query, kinds, vector, k=1)
        return (hits[0], hits[0].score) if hits else None

    def search(self, query: str, kind: str, k: int = 3, vector: np.ndarray | None = None) -> list[Hit]:
        """Top ``k`` documents of ``kind`` for ``query`` by RRF of dense and BM25 rankings."""
        if kind not in self._docs:
            self.sync([kind])
        docs = self._docs[kind]
        if not docs or not query.strip():
            return []
        vector = self.embedder.query(query) if vector is None else vector
        result = self._query(kind, vector, min(self.dense_k, len(docs)), [])
        # without the vector store BM25 ranks alone; ids another process indexed that ours has not read are skipped
        dense = [i for i in result["ids"][0] if i in docs] if result is not None else []
        lexical = [i for i, _ in self._lexical[kind].search(query, self.dense_k)]
        fused: dict[str, float] = {}
        for ranking in (lexical, dense):  # lexical first: it wins ties
            for rank, doc_id in enumerate(ranking):
                fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        index = self._lexical[kind]
        terms = index.query_terms(query)
        return [Hit(kind, i, docs[i].title, docs[i].text, s, i in lexical and index.grounded(terms, i))
                for i, s in best if i in docs]


def _digests(docs: Iterable[_Doc]) -> dict[str, str]:
    return {d.id: digest(d.text) for d in docs}


def _gone(exc: Exception) -> bool:
    """Whether Chroma says the collection (or its database) does not exist."""
    errors = sys.modules.get("chromadb.errors")  # not imported yet: Chroma has not said anything
    return errors is not None and isinstance(exc, errors.NotFoundError)
