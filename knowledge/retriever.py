"""Hybrid retrieval over products, FAQ, policy clauses and promotions.

Dense: Chroma (PersistentClient, ``embedding_function=None``, our own vectors, one collection per
kind). Lexical: jieba + BM25. The two rankings are fused with reciprocal rank fusion (RRF), which
needs no score calibration between them. Orders and shipments are never embedded: they are read by
id from SQL, scoped to one customer (see ``agent.tools``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from knowledge.embeddings import Embedder, cached_passages, digest
from knowledge.lexical import LexicalIndex, generic_nouns, nouns, shares_run, synonyms
from knowledge.tables import Document, Product, Promotion

SEARCH_KINDS = ("products", "faq", "policy", "promotions")
RRF_K = 60


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
    """Searches one kind at a time; ``sync`` brings the indexes in line with the SQL tables."""

    def __init__(self, engine: Engine, chroma_path: Path | str, embedder: Embedder, dense_k: int = 20) -> None:
        self.engine = engine
        self.embedder = embedder
        self.dense_k = dense_k
        self._path = str(chroma_path)
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._docs: dict[str, dict[str, _Doc]] = {}
        self._lexical: dict[str, LexicalIndex] = {}
        self._corpus_text: dict[str, str] = {}
        self._name_text: dict[str, str] = {}
        self._lock = threading.Lock()

    def _collection(self, kind: str) -> Any:
        """The Chroma collection of ``kind``, looked up once (not on every query)."""
        if kind not in self._collections:
            if self._client is None:  # opened on first use: importing Chroma costs seconds a worker may not need
                import chromadb

                self._client = chromadb.PersistentClient(path=self._path,
                                                         settings=chromadb.Settings(anonymized_telemetry=False))
            self._collections[kind] = self._client.get_or_create_collection(
                f"{kind}-{self.embedder.name}", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
        return self._collections[kind]

    def sync(self, kinds: Iterable[str] = SEARCH_KINDS) -> dict[str, int]:
        """Embed new or changed documents (cached by content hash), drop removed ones, rebuild BM25."""
        counts = {}
        with self._lock:
            for kind in kinds:
                docs = corpus(self.engine, kind)
                col = self._collection(kind)
                existing = col.get(include=["metadatas"])
                have = {i: (m or {}).get("digest") for i, m in zip(existing["ids"], existing["metadatas"], strict=True)}
                wanted = {d.id: digest(d.text) for d in docs}
                stale = [i for i in have if i not in wanted]
                if stale:
                    col.delete(ids=stale)
                changed = [d for d in docs if have.get(d.id) != wanted[d.id]]
                for start in range(0, len(changed), 1000):
                    chunk = changed[start:start + 1000]
                    vectors = cached_passages(self.engine, self.embedder, [d.text for d in chunk])
                    col.upsert(ids=[d.id for d in chunk], embeddings=vectors,
                               metadatas=[{"digest": wanted[d.id], "title": d.title} for d in chunk])
                self._docs[kind] = {d.id: d for d in docs}
                self._corpus_text[kind] = " ".join(f"{d.title} {d.text}" for d in docs).casefold()
                # what names a document: its title, and for a product its codes, aliases and category too
                self._name_text[kind] = "\n".join(
                    d.title + (" " + " ".join(d.text.split("｜")[1:5]) if kind == "products" else "")
                    for d in docs).casefold()
                # the title counts twice for BM25: a shopper naming a product means that product
                self._lexical[kind] = LexicalIndex([d.id for d in docs], [f"{d.title} {d.text}" for d in docs])
                counts[kind] = len(docs)
        return counts

    def indexed(self, kind: str) -> int:
        """How many documents of ``kind`` the vector index holds."""
        with self._lock:
            return int(self._collection(kind).count())

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
            result = self._collection(kind).query(query_embeddings=[vector], n_results=min(k, len(docs)),
                                                  include=["distances"])
            index = self._lexical[kind]
            terms = index.query_terms(query)
            hits += [Hit(kind, i, docs[i].title, docs[i].text, 1.0 - float(d), index.grounded(terms, i))
                     for i, d in zip(result["ids"][0], result["distances"][0], strict=True) if i in docs]
        return sorted(hits, key=lambda h: -h.score)[:k]

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
        dense = self._collection(kind).query(query_embeddings=[vector], n_results=min(self.dense_k, len(docs)),
                                             include=[])["ids"][0]
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
