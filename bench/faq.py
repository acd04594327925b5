"""FAQ and policy answers: does a question an entry answers get that entry, and does one no entry answers
get none? Runs real turns (router → resolution → tools → offline brain) on the demo shop.

    python bench/faq.py [--embedder e5|hash]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import select

from agent.runtime import Runtime
from knowledge.clock import SimClock
from knowledge.settings import Settings
from knowledge.tables import Customer, Document

QUESTIONS = Path(__file__).resolve().parent / "data" / "faq_questions.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedder", choices=["e5", "hash"], default="e5")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sopagent-faq-"))
    runtime = Runtime.build(Settings(home=home, embedder=args.embedder), clock=SimClock(datetime(2026, 11, 23, 2,
                                                                                                 tzinfo=UTC)))
    runtime.load_demo_shop()
    conversation = runtime.conversation
    assert conversation is not None
    with runtime.deps.engine.begin() as conn:
        conn.execute(Customer.__table__.insert().values(id="c_bench", name="测", added_at=runtime.deps.clock.now(),
                                                        stage="active", attributes={}))
        bodies = {title: text.split("\n", 1)[-1].strip()[:20] for title, text in
                  conn.execute(select(Document.title, Document.text)).all()}
    right = wrong = missed = false_answers = 0
    nearest_right, right_scores, unanswerable_scores = 0, [], []
    answerable = sum(1 for _, title in yaml.safe_load(QUESTIONS.read_text("utf-8")) if title)
    for question, title in yaml.safe_load(QUESTIONS.read_text("utf-8")):
        with runtime.deps.engine.begin() as conn:
            prepared = conversation.prepare(conn, "c_bench", question)
            from agent.tools import CustomerTools

            tools = CustomerTools(conn, conversation.retriever, "c_bench", conversation.doc_index(conn))
            facts = tools.gather(question, prepared.understanding, prepared.vector, today="2026-11-23")
            reply = conversation.fallback.reply(prepared.turn, prepared.understanding, facts).text
        quoted = [t for t, body in bodies.items() if body and body in reply]
        closest = conversation.retriever.closest(question, ("faq", "policy"), prepared.vector)
        if closest is not None:  # the entry nearest in meaning, whatever the intent (the calibration of the bar)
            nearest_right += closest[0].title == title
            (right_scores if closest[0].title == title else unanswerable_scores if title is None else []).append(
                closest[1])
        if title is None:
            false_answers += bool(quoted)
            status = "ok (no entry)" if not quoted else f"ANSWERED WITH {quoted[0]}"
        elif title in quoted:
            right += 1
            status = "ok"
        elif quoted:
            wrong += 1
            status = f"WRONG: {quoted[0]}"
        else:
            missed += 1
            status = "MISSED"
        print(f"{status:<28} {prepared.understanding.intent:<16} {question}")
    print(f"answerable questions: {answerable}; right entry {right} ({right / answerable:.0%}), wrong entry {wrong}, "
          f"no entry {missed}; unanswerable questions given an entry anyway: {false_answers}")
    if right_scores:
        print(f"nearest entry by meaning: right for {nearest_right}/{answerable}; similarity when right "
              f"{min(right_scores):.3f}–{max(right_scores):.3f}, for unanswerable questions "
              f"{max(unanswerable_scores, default=0):.3f} at most (bar in agent/tools.py: FAQ_SIMILARITY)")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
