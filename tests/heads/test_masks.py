"""Mask specs: top-K, random-K outside the retrieval set, the layer-matched control, explicit lists, errors."""

from __future__ import annotations

import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.heads.masks import layer_matched_draw, parse_mask, select_heads, to_ablate
from retrieval_heads.heads.scores import HeadScores



def _scores(L=3, H=4):
    # head (l, h) scores (l * H + h) / 100: the best are in the last layer; 0-0 .. 0-3 score <= 0.03
    return HeadScores(L, H, {(l, h): [(l * H + h) / 100] for l in range(L) for h in range(H)})


def test_mask_specs():
    s = _scores()
    assert select_heads("none", 3, 4, scores=s) == []
    assert select_heads("top:0", 3, 4, scores=s) == []
    assert select_heads("top:3", 3, 4, scores=s) == [(2, 1), (2, 2), (2, 3)]
    assert select_heads("heads:2-1,0-3, 2-1", 3, 4) == [(0, 3), (2, 1)]
    assert to_ablate([(2, 3), (0, 1), (2, 1)]) == {0: [1], 2: [1, 3]}
    assert str(parse_mask("random:5")) == "random:5"


def test_random_mask_avoids_retrieval_heads_and_is_seeded():
    s = _scores()
    retrieval = set(s.above(0.1))  # scores 0.11 .. 0.11: heads 2-3 and up
    assert retrieval == {(2, 3)}
    picks = [select_heads("random:6", 3, 4, scores=s, threshold=0.1, seed=i) for i in range(5)]
    for p in picks:
        assert len(p) == 6 and len(set(p)) == 6 and not set(p) & retrieval
        assert all(0 <= l < 3 and 0 <= h < 4 for l, h in p)
    assert picks[0] == select_heads("random:6", 3, 4, scores=s, threshold=0.1, seed=0)
    assert len({tuple(p) for p in picks}) > 1
    # threshold 0.05: heads scoring 0.06 .. 0.11 (6 of them) are retrieval heads, 6 remain
    assert set(select_heads("random:6", 3, 4, scores=s, threshold=0.05)) == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)}
    with pytest.raises(RHeadsError, match="only 6"):
        select_heads("random:7", 3, 4, scores=s, threshold=0.05)


@pytest.mark.parametrize("spec, match", [
    ("top:x", "whole number"), ("bottom:3", "bad mask"), ("top:", "bad mask"), ("heads:1", "layer-head"),
    ("heads:3-0", "3 layers x 4 heads"), ("heads:0-4", "3 layers x 4 heads"), ("top:13", "3 x 4 = 12"),
])
def test_mask_errors(spec, match):
    with pytest.raises(RHeadsError, match=match):
        select_heads(spec, 3, 4, scores=_scores())


def test_scores_of_another_shape_or_missing():
    with pytest.raises(RHeadsError, match="3 layers x 4 heads but the model has 30 x 9"):
        select_heads("top:2", 30, 9, scores=_scores())
    with pytest.raises(RHeadsError, match="needs head scores"):
        select_heads("random:2", 3, 4)


def test_layer_matched_control_draws_from_the_top_k_layers():
    s = _scores()  # top-3: 2-1, 2-2, 2-3 (layer 2); 2-3 is the only retrieval head (> 0.1)
    for seed in range(5):
        drawn = select_heads("random-layer:3", 3, 4, scores=s, threshold=0.1, seed=seed)
        assert len(drawn) == 3 and len(set(drawn)) == 3
        assert not set(drawn) & ({(2, 1), (2, 2), (2, 3)} | set(s.above(0.1)))
    # layer 2 has one head left (2-0) for three top-K heads: the other two come from the nearest layer, 1
    drawn, moved = layer_matched_draw(s.top(3), set(s.above(0.1)), 3, 4, seed=0)
    assert moved == 2 and (2, 0) in drawn and sum(l == 1 for l, _ in drawn) == 2
    # one for one when the layers have room: top-2 in layer 2 -> one head each from layer 2's free heads
    s2 = HeadScores(3, 4, {(l, h): [0.9 if (l, h) in {(0, 0), (2, 2)} else 0.0] for l in range(3) for h in range(4)})
    drawn, moved = layer_matched_draw(s2.top(2), set(s2.above(0.1)), 3, 4, seed=1)
    assert moved == 0 and sorted(l for l, _ in drawn) == [0, 2] and not set(drawn) & {(0, 0), (2, 2)}
    assert select_heads("random-layer:2", 3, 4, scores=s2, seed=1) == drawn
    assert str(parse_mask("random-layer:4")) == "random-layer:4"
