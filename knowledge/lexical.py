"""Lexical index: jieba word segmentation + BM25 (bm25s). Strong on product names, SKUs and codes."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import bm25s
import jieba
import yaml

jieba.setLogLevel(logging.WARNING)
_STOP = set("的了吗呢吧啊呀么是我你他她它们这那有和与或就都也还在要想请问一下多少怎么什么哪个哪款可以能".strip())
_CODE = re.compile(r"[A-Za-z]+[-_]?[A-Za-z0-9]*\d+[A-Za-z0-9-]*")


@cache
def synonyms() -> dict[str, str]:
    """Shopper words mapped to catalogue words (``knowledge/synonyms.yaml``)."""
    return yaml.safe_load((Path(__file__).parent / "synonyms.yaml").read_text(encoding="utf-8")) or {}


def expand(text: str) -> str:
    """The query plus the catalogue words its shopper words stand for."""
    extra = [v for k, v in synonyms().items() if k in text]
    return " ".join([text, *extra])


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens, lower-cased, without punctuation and one-character stop words."""
    _vocabulary_loaded()
    tokens = [t.strip().lower() for t in jieba.cut_for_search(text)]
    tokens += [m.lower() for m in _CODE.findall(text)]
    return [t for t in tokens if t and not re.fullmatch(r"[\W_]+", t) and t not in _STOP]


def add_words(words: Sequence[str]) -> None:
    """Teach jieba the domain's words (ingredients, product types) so they stay whole."""
    for word in words:
        if word and len(word) >= 2:
            jieba.add_word(word, freq=20000)


@cache
def _vocabulary_loaded() -> bool:
    """Domain words are taught to jieba on first use, not at import (it takes ~0.5 s)."""
    add_words((Path(__file__).parent / "vocabulary.txt").read_text(encoding="utf-8").split())
    return True


class LexicalIndex:
    """BM25 over a fixed list of (id, text); rebuilt whole when the corpus changes (milliseconds per 1k docs)."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self.ids = list(ids)
        self._position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self._bm25: bm25s.BM25 | None = None
        self._vocab: set[str] = set()
        self._terms: list[set[str]] = []
        if self.ids:
            tokenized = [tokenize(t) or ["_empty_"] for t in texts]
            self._terms = [set(doc) for doc in tokenized]
            self._vocab = {tok for doc in tokenized for tok in doc}
            self._bm25 = bm25s.BM25()
            self._bm25.index(tokenized, show_progress=False)

    def query_terms(self, text: str) -> set[str]:
        """The query's tokens with shopper synonyms expanded, as searched."""
        return set(tokenize(expand(text)))

    def grounded(self, query_terms: set[str], doc_id: str) -> bool:
        """The document shares real words with the query: two of two+ characters, or one of three+."""
        position = self._position.get(doc_id)
        terms = self._terms[position] if position is not None else set()
        shared = [t for t in query_terms & terms if len(t) >= 2]
        return len(shared) >= 2 or any(len(t) >= 3 for t in shared)

    def search(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        if self._bm25 is None:
            return []
        query = [t for t in tokenize(expand(text)) if t in self._vocab]
        if not query:
            return []
        docs, scores = self._bm25.retrieve([query], k=min(k, len(self.ids)), show_progress=False)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


@cache
def generic_nouns() -> frozenset[str]:
    """Nouns of any shop's conversation that name no product (``generic_nouns.txt``, operator-extendable)."""
    path = Path(__file__).parent / "generic_nouns.txt"
    return frozenset(w for line in path.read_text(encoding="utf-8").splitlines() for w in line.split("#")[0].split())


def nouns(text: str) -> list[str]:
    """Chinese nouns (jieba part-of-speech n/nz/ng, and ns: jieba reads 香水 as a place) of two or more characters."""
    import jieba.posseg

    _vocabulary_loaded()
    return [w for w, flag in jieba.posseg.cut(text)
            if flag in ("n", "nz", "ng", "ns") and len(w) >= 2 and re.fullmatch(r"[\u4e00-\u9fff]+", w)]


def shares_run(text: str, target: str, run: int = 3) -> bool:
    """Whether ``text`` and ``target`` share ``run`` characters in a row, none of them space or punctuation:
    how a question names a product ("睡眠面膜" in 修护睡眠面膜; two shared characters such as "美白" name nothing)."""
    return any(text[i:i + run] in target for i in range(len(text) - run + 1) if not re.search(r"\W", text[i:i + run]))
