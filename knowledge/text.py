"""Text normalisation applied before any understanding: how people write, folded to one form.

NFKC (full-width → half-width), traditional → simplified (OpenCC), case folding, zero-width and
control characters dropped, runs of whitespace and repeated punctuation collapsed. The transcript
keeps the original text; only understanding reads the normalised form.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import opencc

_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")
_SPACES = re.compile(r"\s+")
_REPEAT_PUNCT = re.compile(r"([!?,.~。，！？～、…])\1+")
_TILDES = str.maketrans({"～": "~", "〜": "~", "“": '"', "”": '"', "‘": "'", "’": "'", "。": "。"})


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalise(text: str) -> str:
    """The canonical form of a customer message for matching and classification."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = _t2s().convert(text).translate(_TILDES).casefold()
    text = _REPEAT_PUNCT.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def compact(text: str) -> str:
    """``normalise`` without any whitespace: for ids and codes written with spaces ("dd 2026 1100 07")."""
    return _SPACES.sub("", normalise(text))
