"""The intent classifier: a linear model over character and word n-grams, trained from the shop's examples.

Trained once per process from ``intents.yaml`` (labelled utterances of every intent, including English
and traditional phrasings), so a phrasing an operator adds there is learned without code. Input is
normalised text; the output is a probability per intent, and "unknown" below the confidence floor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import jieba
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline

from knowledge.text import normalise
from sop_graphs.shop_data import IntentBook

UNKNOWN = "unknown"
CONFIDENCE_FLOOR = 0.30  # below this the top intent is a guess; calibrated with bench/intents.py
# intents that open tasks, hand off or stop a questionnaire need more certainty than a reply does
STRICT_FLOOR = {"abuse": 0.5, "adverse_reaction": 0.38, "damaged": 0.38, "missing_item": 0.38, "quality_issue": 0.38,
                "human": 0.5, "stop_asking": 0.45, "unsubscribe": 0.6}


def _words(text: str) -> list[str]:
    return [w for w in jieba.lcut(text) if w.strip()]


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    ranked: tuple[tuple[str, float], ...]


class IntentClassifier:
    """Multinomial logistic regression on TF-IDF char 1–3-grams plus jieba words."""

    def __init__(self, texts: list[str], labels: list[str], floor: float = CONFIDENCE_FLOOR) -> None:
        if len(set(labels)) < 2:
            raise ValueError("an intent classifier needs examples of at least two intents")
        features = FeatureUnion([
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, lowercase=False)),
            ("words", TfidfVectorizer(tokenizer=_words, token_pattern=None, lowercase=False, sublinear_tf=True)),
        ])
        self.model = make_pipeline(features, LogisticRegression(C=12.0, max_iter=3000, class_weight="balanced"))
        self.model.fit([normalise(t) for t in texts], labels)
        self.floor = floor

    @classmethod
    def from_book(cls, book: IntentBook) -> IntentClassifier:
        texts = [e for entry in book.intents.values() for e in entry.examples]
        labels = [name for name, entry in book.intents.items() for _ in entry.examples]
        return cls(texts, labels)

    def predict(self, text: str) -> Prediction:
        """``text`` must already be normalised."""
        probs = self.model.predict_proba([text])[0]
        classes = self.model.classes_
        order = np.argsort(-probs)[:3]
        ranked = tuple((str(classes[i]), float(probs[i])) for i in order)
        intent, confidence = ranked[0]
        floor = max(self.floor, STRICT_FLOOR.get(intent, 0.0))
        return Prediction(intent if confidence >= floor else UNKNOWN, confidence, ranked)


@lru_cache(maxsize=4)
def _trained(digest: str, payload: str) -> IntentClassifier:
    return IntentClassifier.from_book(IntentBook.model_validate_json(payload))


def classifier_for(book: IntentBook) -> IntentClassifier | None:
    """The trained classifier of ``book``, built once per process per distinct example set."""
    if len({name for name, entry in book.intents.items() if entry.examples}) < 2:
        return None
    payload = book.model_dump_json()
    return _trained(hashlib.sha256(payload.encode()).hexdigest(), payload)
