"""Opt-out detection against a labelled set of real phrasings: every opt-out found, zero false positives."""

from pathlib import Path

import pytest
import yaml

from sop_graphs.policy import is_unsubscribe

LABELLED = yaml.safe_load((Path(__file__).parent.parent / "agent" / "data" / "unsubscribe.yaml").read_text("utf-8"))


@pytest.mark.parametrize("text", LABELLED["opt_out"])
def test_opt_out_is_detected(text):
    assert is_unsubscribe(text)


@pytest.mark.parametrize("text", LABELLED["not_opt_out"])
def test_message_that_only_looks_like_an_opt_out_is_not_one(text):
    assert not is_unsubscribe(text)
