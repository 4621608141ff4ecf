"""The paper's head-score format: round trip, published files, bad files, head lists."""

import json

import numpy as np
import pytest

from retrieval_heads.errors import RHeadsError
from retrieval_heads.heads.scores import HeadScores, parse_heads


def test_paper_format_roundtrip_and_published_files(tmp_path):
    s = HeadScores.empty(2, 2)
    s.add_sample(np.array([[0.5, 0.0], [0.0, 1.0]]))
    s.add_sample(np.array([[0.25, 0.0], [0.0, 0.0]]))
    s.save(tmp_path / "scores.json")
    raw = json.loads((tmp_path / "scores.json").read_text())
    assert raw == {"0-0": [0.5, 0.25], "0-1": [0.0, 0.0], "1-0": [0.0, 0.0], "1-1": [1.0, 0.0]}
    back = HeadScores.load(tmp_path)
    assert np.allclose(back.mean(), s.mean())
    # the paper's published files: {"layer-head": [floats]}, keys in any order
    (tmp_path / "paper.json").write_text(json.dumps({"31-7": [0.0, 0.1], "0-0": [0.2], "16-19": [0.9, 0.7]}))
    p = HeadScores.load(tmp_path / "paper.json")
    assert (p.num_layers, p.num_heads) == (32, 20)
    assert p.top(1) == [(16, 19)]


@pytest.mark.parametrize("content, msg", [("{}", "not a head-score file"), ('{"a-b": [1]}', "layer-head"),
                                           ("nope", "not valid JSON")])
def test_bad_score_files(tmp_path, content, msg):
    f = tmp_path / "s.json"
    f.write_text(content)
    with pytest.raises(RHeadsError, match=msg):
        HeadScores.load(f)


def test_parse_heads():
    assert parse_heads("16-19, 11-15") == [(16, 19), (11, 15)]
    with pytest.raises(RHeadsError, match="layer-head"):
        parse_heads("16:19")
