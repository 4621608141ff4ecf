"""The retrieval score on constructed cases where it is known exactly, against an eager oracle, and ROUGE."""

import pytest
import torch

from retrieval_heads.capture.attention import use_rheads
from retrieval_heads.capture.decoding import greedy_with_capture
from retrieval_heads.heads.scores import scores_from_records
from retrieval_heads.scoring.copy import copy_counts
from retrieval_heads.scoring.rouge import rouge1_recall
from tiny import tiny_model


def test_copy_counts_hand_computed():
    # prompt: 10 tokens, answer span [4, 7) holds tokens 40 41 42; the model generates 40 41 42 9
    seq = torch.tensor([1, 2, 3, 5, 40, 41, 42, 6, 7, 8, 40, 41, 42, 9])
    gen = seq[10:]
    T, L, H = 4, 2, 3
    top1 = torch.zeros(T, L, H, dtype=torch.int32)
    top1[:, 0, 0] = torch.tensor([4, 5, 6, 7])  # copies at 3 steps: score 3/3
    top1[:, 0, 1] = torch.tensor([4, 4, 4, 4])  # in span, right token only at step 0: 1/3
    top1[:, 0, 2] = torch.tensor([10, 11, 12, 13])  # right tokens, outside the span: 0
    top1[:, 1, 0] = torch.tensor([5, 6, 4, 4])  # in span, wrong tokens: 0
    top1[:, 1, 1] = torch.tensor([4, 5, 3, 3])  # 2 copies
    c = copy_counts(top1, seq, gen, (4, 7))
    assert c.tolist() == [[3, 1, 0], [0, 2, 0]]
    recs = [{"counted": True, "span_len": 3, "copies": {"0-0": 3, "0-1": 1, "1-1": 2}},
            {"counted": False, "span_len": 3, "copies": {"1-2": 3}},
            {"counted": True, "span_len": 3, "copies": {"0-0": 3}}]
    s = scores_from_records(recs, L, H)
    assert s.n_samples == 2
    m = s.mean()
    assert m[0, 0] == pytest.approx(1.0) and m[0, 1] == pytest.approx(1 / 6) and m[1, 1] == pytest.approx(1 / 3)
    assert m[1, 2] == 0.0  # the uncounted sample is ignored
    assert s.above(0.1) == [(0, 0), (1, 1), (0, 1)]


def test_score_pipeline_matches_eager_oracle():
    """Capture + copy_counts equals the paper's loop over eager output_attentions on a tiny model."""
    model = use_rheads(tiny_model("llama", seed=3))
    eager = tiny_model("llama", "eager", seed=3)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 64, (40,), generator=g).tolist()
    gen, top1 = greedy_with_capture(model, prompt, max_new_tokens=8)
    seq = torch.cat([torch.tensor(prompt), gen])
    # choose a span that holds at least one generated token so copies are possible
    span = (5, 35)
    got = copy_counts(top1, seq, gen, span)
    with torch.no_grad():
        att = eager(seq[None, :-1], output_attentions=True).attentions
    expect = torch.zeros_like(got)
    n = len(prompt)
    for step in range(len(gen)):
        for layer, a in enumerate(att):
            for head in range(a.shape[1]):
                i = int(a[0, head, n - 1 + step].argmax())
                if span[0] <= i < span[1] and seq[i] == gen[step]:
                    expect[layer, head] += 1
    assert torch.equal(got, expect)


def test_rouge_recall():
    assert rouge1_recall("The answer is smoked cardamom.", "smoked cardamom") == 1.0
    assert rouge1_recall("smoked paprika", "smoked cardamom") == 0.5
    assert rouge1_recall("", "smoked cardamom") == 0.0


@pytest.mark.parametrize("text", ["The special magic number is 7,432!", "Mr Green can't ride a horse; he's MEAN_person.",
                                  "running runs ran runner", "e-mail: x_y@z.com 3.14", "  "])
def test_rouge_tokens_are_the_papers_on_ascii(text):
    from nltk.stem import porter
    from rouge_score import tokenize

    from retrieval_heads.scoring.rouge import Tokenizer

    assert Tokenizer().tokenize(text) == tokenize.tokenize(text, porter.PorterStemmer())


def test_rouge_stems_and_counts_non_latin_answers():
    assert rouge1_recall("Grandma was running a bakery", "she runs bakeries") == 2 / 3  # run, bakeri; not 'she'
    assert rouge1_recall("пароль: синий кит", "синий кит") == 1.0  # rouge-score alone drops both words
    assert rouge1_recall("密码是蓝鲸", "蓝鲸") == 1.0 and rouge1_recall("密码是蓝猫", "蓝鲸") == 0.5
