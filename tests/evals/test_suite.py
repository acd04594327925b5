"""The bundled offline eval suite passes (the same run as `sopagent eval`)."""

import time
from pathlib import Path

from evals.case import load_cases
from evals.report import console_lines
from evals.runner import aggregate, run_suite

CASES = Path(__file__).resolve().parents[2] / "evals" / "cases"


def test_bundled_suite_has_at_least_80_cases():
    assert len(load_cases([CASES])) >= 80


def test_offline_suite_passes(record_property):
    started = time.perf_counter()
    results = run_suite(load_cases([CASES]), "offline", repeat=1, jobs=2)
    seconds = time.perf_counter() - started
    record_property("eval_wall_seconds", round(seconds, 1))
    failures = [line for line in console_lines(results) if not line.startswith("PASS")]
    metrics = aggregate(results)
    record_property("eval_summary", f"{metrics['passed']} passed, {metrics['failed']} failed")
    assert not failures, "\n".join(failures)
