"""RULER's string-match metrics on hand-made predictions: full, partial and zero credit, case and clean-up."""

from __future__ import annotations

import pytest

from retrieval_heads.evals.suite.metrics import postprocess, score, string_match_all, string_match_part


def test_string_match_all_is_the_share_of_gold_strings_found():
    gold = ["1234567", "7654321", "5555555", "9999999"]
    assert string_match_all("the numbers are 1234567, 7654321, 5555555 and 9999999", gold) == 100.0
    assert string_match_all("1234567 and 5555555", gold) == 50.0  # partial
    assert string_match_all("I do not know", gold) == 0.0
    assert string_match_all("VAR abcde and FGHIJ", ["ABCDE", "FGHIJ", "KLMNO"]) == pytest.approx(200 / 3)


def test_string_match_part_gives_credit_for_any_gold_string():
    assert string_match_part("It was Arthur's Magazine.", ["arthur's magazine", "First for Women"]) == 100.0
    assert string_match_part("First", ["arthur's magazine", "First for Women"]) == 0.0


def test_score_cleans_up_as_ruler_and_names_the_metric():
    assert postprocess("  \x00Delhi\t \n") == "Delhi"
    assert score("string_match_part", " delhi\x01", ["Delhi"]) == 100.0
    assert score("string_match_all", "one two", ["one", "three"]) == 50.0
    assert score("string_match_all", "anything", []) == 0.0
