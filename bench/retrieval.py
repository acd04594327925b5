"""Retrieval benchmark: labelled Chinese questions against the demo shop, then the same at N generated products.

Prints hit@1, hit@3 and p50/p95 latency per query (e5 query embedding + Chroma + BM25 + RRF).
Usage: python bench/retrieval.py [--products 10000] [--embedder e5|hash] [--home /tmp/sopagent-retrieval]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from pathlib import Path

import yaml

from knowledge.db import init_db, make_engine, upsert
from knowledge.embeddings import E5Embedder, HashingEmbedder
from knowledge.importer import import_demo_shop
from knowledge.retriever import Retriever
from knowledge.tables import Product

QUESTIONS = Path(__file__).parent / "data" / "retrieval_questions.yaml"


def evaluate(retriever: Retriever, questions: list[list]) -> tuple[float, float, float, float, list[str]]:
    if hasattr(retriever.embedder, "clear_cache"):
        retriever.embedder.clear_cache()  # every timed query embeds its text
    hits1 = hits3 = 0
    times, misses = [], []
    for kind, question, wanted in questions:
        t0 = time.perf_counter()
        hits = retriever.search(question, kind, k=3)
        times.append((time.perf_counter() - t0) * 1000)
        ids = [h.id for h in hits]
        hits1 += bool(ids[:1] and ids[0] in wanted)
        hits3 += bool(set(ids) & set(wanted))
        if not set(ids) & set(wanted):
            misses.append(f"{question} -> {ids} (want {wanted})")
    times.sort()
    n = len(questions)
    return hits1 / n, hits3 / n, statistics.median(times), times[int(0.95 * (n - 1))], misses


def generated_products(n: int, seed: int = 11) -> list[dict]:
    """Plausible distractor SKUs: brand x line x category x size, with suitability and usage text."""
    rnd = random.Random(seed)
    brands = ["悦肤", "植研", "清颜", "沐光", "初雪", "森屿", "柔肌", "素野", "澄净", "花间"]
    lines = ["水光", "焕颜", "净透", "舒缓", "紧致", "亮采", "柔润", "修护", "清爽", "奢养"]
    cats = [("面霜", "霜"), ("精华", "精华液"), ("洁面", "洁面乳"), ("防晒", "防晒霜"), ("面膜", "面膜"),
            ("爽肤水", "化妆水"), ("眼霜", "眼霜"), ("身体护理", "身体乳"), ("彩妆", "粉底液")]
    skins = ["干皮", "油皮", "混合皮", "敏感肌", "熟龄肌", "所有肤质"]
    rows = []
    for i in range(n):
        cat, noun = rnd.choice(cats)
        name = f"{rnd.choice(brands)}{rnd.choice(lines)}{noun} {rnd.choice([30, 50, 100, 150])}ml"
        rows.append({"sku": f"GEN-{i:05d}", "name": name, "category": cat, "price": float(rnd.randint(39, 699)),
                     "stock": rnd.randint(0, 500), "description": f"{name}，日常{cat}护理",
                     "usage": "早晚洁面后取适量使用", "suitable_for": rnd.choice(skins), "status": "on_sale"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=10_000, help="generated products for the scale run (0 skips)")
    parser.add_argument("--embedder", choices=["e5", "hash"], default="e5")
    parser.add_argument("--home", type=Path, default=Path("/tmp/sopagent-retrieval"))
    args = parser.parse_args()
    questions = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    embedder = E5Embedder() if args.embedder == "e5" else HashingEmbedder()
    shutil.rmtree(args.home / "chroma", ignore_errors=True)  # the SQLite file keeps the embedding cache
    engine = make_engine(f"sqlite:///{args.home / 'shop.sqlite'}")
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(Product.__table__.delete())
    import_demo_shop(engine)
    retriever = Retriever(engine, args.home / "chroma", embedder)
    t0 = time.perf_counter()
    counts = retriever.sync()
    print(f"embedder:        {embedder.name}")
    print(f"indexed:         {counts} in {time.perf_counter() - t0:.1f}s")
    for kind, question, _ in questions[:5]:  # warm-up (model load, first Chroma query)
        retriever.search(question, kind)
    h1, h3, p50, p95, misses = evaluate(retriever, questions)
    print(f"demo shop:       {len(questions)} questions  hit@1 {h1:.2f}  hit@3 {h3:.2f}  "
          f"p50 {p50:.1f} ms  p95 {p95:.1f} ms")
    for miss in misses:
        print(f"  miss: {miss}")
    if args.products:
        with engine.begin() as conn:
            upsert(conn, Product.__table__, generated_products(args.products))
        t0 = time.perf_counter()
        retriever.sync(["products"])
        print(f"scale:           +{args.products:,} generated products indexed in {time.perf_counter() - t0:.1f}s")
        h1, h3, p50, p95, misses = evaluate(retriever, questions)
        print(f"at {args.products + 44:,} products: hit@1 {h1:.2f}  hit@3 {h3:.2f}  p50 {p50:.1f} ms  p95 {p95:.1f} ms")
        for miss in misses:
            print(f"  miss: {miss}")


if __name__ == "__main__":
    main()
