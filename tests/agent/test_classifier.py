"""The intent classifier: product words never decide the intent; masking is part of the trained model."""

from __future__ import annotations

import pickle

from agent.classifier import NEUTRAL_ITEM, IntentClassifier, Masker


def test_product_words_read_as_one_neutral_word():
    mask = Masker(["空气炸锅", "面霜", "炸锅"])
    assert mask("昨晚拍的空气炸锅咋还没发") == f"昨晚拍的{NEUTRAL_ITEM}咋还没发"


def test_without_product_words_text_is_unchanged():
    assert Masker([])("面霜漏了") == "面霜漏了"


def test_a_product_no_example_names_is_classified_by_what_is_asked():
    texts = ["面霜漏了", "精华瓶子碎了", "盒子压坏了", "面霜多少钱", "精华什么价格", "这个卖多少"]
    labels = ["damaged", "damaged", "damaged", "price", "price", "price"]
    model = IntentClassifier(texts, labels, product_words=["面霜", "精华", "水壶"])
    assert model.predict("水壶漏了").ranked[0][0] == "damaged"
    assert model.predict("水壶多少钱").ranked[0][0] == "price"


def test_trained_model_with_its_masker_survives_pickling():
    model = IntentClassifier(["面霜漏了", "面霜多少钱"], ["damaged", "price"], product_words=["面霜"])
    restored = pickle.loads(pickle.dumps(model))
    assert restored.mask("水壶") == "水壶" and restored.mask("面霜") == NEUTRAL_ITEM
