"""The intent classifier: a linear model over character/word n-grams and sentence embeddings.

Trained once per process from the library's ``intents.yaml`` (labelled utterances of every intent,
including English and traditional phrasings), so a phrasing an operator adds there is learned
without code. Features: TF-IDF of character 1–3-grams and jieba words (what is written) joined with
the embedder's sentence vector (what is meant: the bundled multilingual e5 generalises to phrasings
no example has). Input is normalised text; below a confidence floor the intent is "unknown".
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jieba
import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from knowledge.embeddings import Embedder
from knowledge.text import normalise
from sop_graphs.shop_data import IntentBook

UNKNOWN = "unknown"
CONFIDENCE_FLOOR = 0.30  # below this the top intent is a guess; see bench/intents.py
# intents that open tasks, hand off or stop a questionnaire need more certainty than a reply does
STRICT_FLOOR = {"abuse": 0.5, "adverse_reaction": 0.38, "damaged": 0.38, "missing_item": 0.38, "quality_issue": 0.38,
                "human": 0.5, "stop_asking": 0.55, "unsubscribe": 0.6, "repeat_question": 0.6}
VECTOR_WEIGHT = 3.0  # how much the sentence embedding counts against the n-grams (bench/intents.py)


def _words(text: str) -> list[str]:
    return [w for w in jieba.lcut(text) if w.strip()]


NEUTRAL_ITEM = "东西"  # what a product word reads as to the classifier: "昨晚拍的空气炸锅咋还没发" → "昨晚拍的东西咋还没发"


class Masker:
    """Replaces any of ``product_words`` in normalised text by a neutral word, so which product a message names
    never decides what it asks (the examples name skincare; a kettle shop's customers do not). Picklable."""

    def __init__(self, product_words: Sequence[str]) -> None:
        words = sorted({normalise(w) for w in product_words if w.strip()}, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, words))) if words else None

    def __call__(self, text: str) -> str:
        return self.pattern.sub(NEUTRAL_ITEM, text) if self.pattern is not None else text


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    ranked: tuple[tuple[str, float], ...]


class IntentClassifier:
    """Multinomial logistic regression on TF-IDF n-grams, plus sentence vectors when an embedder is given."""

    def __init__(self, texts: list[str], labels: list[str], embedder: Embedder | None = None,
                 floor: float = CONFIDENCE_FLOOR, product_words: Sequence[str] = ()) -> None:
        if len(set(labels)) < 2:
            raise ValueError("an intent classifier needs examples of at least two intents")
        self.mask = Masker(product_words)
        self.embedder = embedder
        self.floor = floor
        self.features = FeatureUnion([
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, lowercase=False)),
            ("words", TfidfVectorizer(tokenizer=_words, token_pattern=None, lowercase=False, sublinear_tf=True)),
        ])
        normalised = [self.mask(normalise(t)) for t in texts]
        grams = self.features.fit_transform(normalised)
        vectors = embedder.queries(normalised) if embedder is not None else None
        self.model = LogisticRegression(C=12.0, max_iter=3000, class_weight="balanced")
        self.model.fit(self._join(grams, vectors), labels)

    def _join(self, grams: csr_matrix, vectors: np.ndarray | None) -> csr_matrix:
        if self.embedder is None:
            return grams
        if vectors is None:
            vectors = np.zeros((grams.shape[0], self.embedder.dim), dtype=np.float32)
        return hstack([grams, csr_matrix(vectors * VECTOR_WEIGHT)]).tocsr()

    def predict(self, text: str, vector: np.ndarray | None = None, *, embed: bool = True) -> Prediction:
        """``text`` must already be normalised; ``vector`` is its query embedding (computed if missing,
        unless ``embed`` is False: then the words alone decide)."""
        masked = self.mask(text)
        if masked != text:
            text, vector = masked, None  # the given vector is of the words before masking
        if self.embedder is not None and vector is None and text and embed:
            vector = self.embedder.query(text)
        features = self._join(self.features.transform([text]), None if vector is None else vector.reshape(1, -1))
        probs = self.model.predict_proba(features)[0]
        classes = self.model.classes_
        order = np.argsort(-probs)[:3]
        ranked = tuple((str(classes[i]), float(probs[i])) for i in order)
        intent, confidence = ranked[0]
        floor = max(self.floor, STRICT_FLOOR.get(intent, 0.0))
        return Prediction(intent if confidence >= floor else UNKNOWN, confidence, ranked)


_EMBEDDERS: dict[str, Embedder | None] = {}


_MODELS: dict[tuple[str, str], IntentClassifier] = {}


def _trained(digest: str, payload: str, embedder_name: str, cache_dir: Path | None) -> IntentClassifier:
    """Train, or load the model this process or an earlier one trained from the same examples and embedder."""
    cached = cache_dir / f"intents-{digest[:16]}-{embedder_name or 'ngrams'}.pickle" if cache_dir else None
    if cached is not None and cached.exists():
        try:
            with cached.open("rb") as handle:
                model = pickle.load(handle)  # our own file, written below from the same examples
            if isinstance(model, IntentClassifier):
                model.embedder = _EMBEDDERS.get(embedder_name)
                return model
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            pass  # a stale or partial cache is retrained
    book = IntentBook.model_validate_json(payload)
    texts = [e for entry in book.intents.values() for e in entry.examples]
    labels = [name for name, entry in book.intents.items() for _ in entry.examples]
    model = IntentClassifier(texts, labels, _EMBEDDERS.get(embedder_name), product_words=book.product_words)
    if cached is not None:
        embedder, model.embedder = model.embedder, None  # the embedder is the process's, never pickled
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            with partial.open("wb") as handle:
                pickle.dump(model, handle)
            partial.replace(cached)  # atomic: a killed process leaves no half-written model
        except OSError:
            pass
        model.embedder = embedder
    return model


def classifier_for(book: IntentBook, embedder: Embedder | None = None,
                   cache_dir: Path | None = None) -> IntentClassifier | None:
    """The trained classifier of ``book`` (and embedder), built once per process per distinct example set and
    cached on disk under ``cache_dir`` so restarts load it in milliseconds."""
    if len({name for name, entry in book.intents.items() if entry.examples}) < 2:
        return None
    payload = book.model_dump_json()
    name = embedder.name if embedder is not None else ""
    _EMBEDDERS.setdefault(name, embedder)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    if (digest, name) not in _MODELS:
        if len(_MODELS) >= 8:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[(digest, name)] = _trained(digest, payload, name, cache_dir)
    return _MODELS[(digest, name)]
