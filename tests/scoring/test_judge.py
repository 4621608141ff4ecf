"""The answer judge: ROUGE-1 recall x100, containment and the response classes, on fixed strings."""

import pytest

from retrieval_heads.scoring.judge import RESPONSE_CLASSES, contains_answer, judge, response_class


ANSWER = "a slow waltz about rain"


@pytest.mark.parametrize("response, cls", [
    ("a slow waltz about rain", "correct"),
    ("It is A Slow Waltz, about rain!", "correct"),  # case and punctuation do not matter
    ("The favorite song is a slow waltz about rain. The favorite song is a slow waltz about rain.", "correct"),
    ("a slow waltz", "partial"),
    ("The sailor likes a waltz about the sea.", "partial"),
    ("The sailor's favorite song is a sea shanty called Blue Harbor.", "hallucinated"),  # shares only 'a'
    ("", "refusal"),
    ("   \n ", "refusal"),
    ("I don't know.", "refusal"),
    ("The song is not mentioned in the context.", "refusal"),
    ("There is no information about the sailor.", "refusal"),
    ("I cannot answer that.", "refusal"),
    ("the the the the the the the the", "degenerate"),
    ("The song is the song is the song is the song is", "degenerate"),
    ("The answer is Paris Paris Paris Paris Paris Paris Paris", "degenerate"),
    ("!!!!!!!!", "degenerate"),
])
def test_response_classes(response, cls):
    assert judge(response, ANSWER)["class"] == cls


def test_scores_on_fixed_strings():
    assert judge("a slow waltz about rain", ANSWER) == {"score": 100.0, "rouge1_recall": 1.0, "contains": True,
                                                        "class": "correct"}
    j = judge("a slow waltz", ANSWER)
    assert j["score"] == 60.0 and j["rouge1_recall"] == 0.6 and not j["contains"]
    assert judge("", ANSWER)["score"] == 0.0
    assert judge("rain about waltz slow a", ANSWER)["score"] == 100.0  # ROUGE-1 ignores order ...
    assert not contains_answer("rain about waltz slow a", ANSWER)  # ... containment does not
    assert contains_answer("Answer: under a loose-floor tile.", "under a loose floor tile")
    assert not contains_answer("a slow waltzes about rain", ANSWER)  # word boundaries
    assert response_class("anything", ANSWER, 1.0, False) == "correct"  # recall 1 is correct
    assert set(RESPONSE_CLASSES) == {"correct", "partial", "hallucinated", "refusal", "degenerate"}


