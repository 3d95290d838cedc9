import math

import pytest
import torch

from pipeline.attribution.attribution import encode_words, gradient_x_input
from pipeline.errors import ConfigError
from pipeline.training.objectives import get_objective
from pipeline.training.objectives.agm import Agm, AgmRandom, nt_xent
from pipeline.training.objectives.base import Batch
from pipeline.training.objectives.baseline import Baseline
from pipeline.training.objectives.selection import above_quantile, random_like
from pipeline.training.training import Example

# [CLS] w0 .. w7 [SEP] [PAD]: special and padding tokens carry the largest scores
SCORES = torch.tensor([[1000.0, 1.0, 5.0, 3.0, 2.0, -8.0, 7.0, 6.0, 4.0, 999.0, 5000.0]])
WORD_INDEX = torch.tensor([[-1, 0, 1, 2, 3, 4, 5, 6, 7, -1, -1]])


def test_selection_is_above_the_quantile_of_the_real_tokens_only():
    # |a| over the real tokens is 1..8; its 0.75 quantile is 6 + 0.25 (linear), so |-8| and 7 pass
    selected = Agm().select(SCORES, real=WORD_INDEX >= 0)
    assert selected.tolist() == [[False] * 5 + [True, True] + [False] * 4]
    # a quantile polluted by padding and special tokens would have selected nothing real
    assert above_quantile(SCORES.abs(), real=WORD_INDEX >= 0, quantile=0.5).nonzero()[:, 1].tolist() == [2, 5, 6, 7]


def test_an_empty_selection_takes_the_arg_max_real_token():
    # ties (nothing strictly above the quantile) and a single real token
    scores = torch.tensor([[9.0, 2.0, 2.0, 2.0, 9.0], [9.0, 3.0, 9.0, 9.0, 9.0]])
    real = torch.tensor([[False, True, True, True, False], [False, True, False, False, False]])
    assert above_quantile(scores, real=real, quantile=0.75).tolist() == [
        [False, True, False, False, False], [False, True, False, False, False],
    ]


def test_agm_random_draws_the_same_counts_at_random_real_positions_deterministically():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 20, generator=generator)
    real = torch.rand(64, 20, generator=generator) < 0.7
    real[:, 0] = False  # [CLS]
    agm = Agm().select(scores, real=real)
    torch.manual_seed(0)
    drawn = AgmRandom().select(scores, real=real)
    torch.manual_seed(0)
    again = AgmRandom().select(scores, real=real)
    assert torch.equal(drawn, again)
    assert torch.equal(drawn.sum(1), agm.sum(1)) and agm.sum(1).min() >= 1
    assert not (drawn & ~real).any()
    assert not torch.equal(drawn, agm)
    assert torch.equal(random_like(agm, real=real, generator=torch.Generator().manual_seed(1)),
                       random_like(agm, real=real, generator=torch.Generator().manual_seed(1)))


def test_random_selection_is_uniform_over_the_real_tokens():
    real = torch.tensor([[False, True, True, True, True, False]]).repeat(4000, 1)
    selected = torch.zeros_like(real)
    selected[:, 1] = True  # one token per sentence
    frequency = random_like(selected, real=real, generator=torch.Generator().manual_seed(0)).float().mean(0)
    assert frequency[[0, 5]].tolist() == [0.0, 0.0]
    torch.testing.assert_close(frequency[1:5], torch.full((4,), 0.25), atol=0.03, rtol=0)


def _batch(tokenizer, sentences, labels):
    encoding, word_index = encode_words(tokenizer, sentences)
    return Batch(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                 labels=torch.tensor(labels), word_index=word_index)


def _loss(objective, model, batch, ce):
    return objective.loss(model=model, modules={}, batch=batch, logits=None, ce=ce, phase="main", epoch=0)


def _one_by_one(model, batch, reduce):
    """Each sentence's own gradient x input (dropout off, unpadded), then ``reduce(a, real, log_probs, E)``."""
    values = []
    for row in range(batch.input_ids.shape[0]):
        keep = batch.attention_mask[row].bool()
        ids = batch.input_ids[row, keep][None]
        embeddings = model.get_input_embeddings()(ids)
        log_probs = model(inputs_embeds=embeddings).logits.log_softmax(-1)
        a = gradient_x_input(embeddings=embeddings, log_probs=log_probs, target=batch.labels[row : row + 1], retain_graph=True)
        values.append(reduce(a[0], batch.word_index[row, keep] >= 0, log_probs, embeddings))
    return torch.stack(values).mean()


def test_mask_term_is_the_batch_mean_of_the_mean_squared_attribution_on_s(minilm):
    model, tokenizer = minilm
    batch = _batch(tokenizer, ["a truly wonderful and moving film".split(), "dull".split(), "not bad at all".split()], [1, 0, 1])
    model.train()
    ce = torch.tensor(0.5)
    loss, terms = _loss(Agm(lambda_mask=3.0), model, batch, ce)
    assert model.training and loss.requires_grad and set(terms) == {"mask"}
    torch.testing.assert_close(loss.detach(), ce + 3.0 * torch.tensor(terms["mask"]))
    model.eval()

    def mean_square_on_s(a, real, log_probs, embeddings):
        s = Agm().select(a[None], real=real[None])[0]
        return a[s].pow(2).mean()

    expected = _one_by_one(model, batch, mean_square_on_s)
    assert math.isclose(terms["mask"], expected.item(), rel_tol=1e-4)

    def rrr_on_s(a, real, log_probs, embeddings):
        s = Agm().select(a[None], real=real[None])[0]
        (grad,) = torch.autograd.grad(log_probs.sum(), embeddings)
        return grad[0, s].pow(2).sum(-1).mean()

    _, rrr_terms = _loss(Agm(rrr=True), model, batch, ce)
    assert math.isclose(rrr_terms["mask"], _one_by_one(model, batch, rrr_on_s).item(), rel_tol=1e-4)


def test_zero_weights_return_the_cross_entropy_itself(minilm):
    model, tokenizer = minilm
    batch = _batch(tokenizer, ["fine".split()], [0])
    ce = torch.tensor(0.5)
    assert _loss(Agm(lambda_mask=0.0), model, batch, ce) == (ce, {})


def test_counterfactual_term_is_added_with_its_weight(minilm):
    model, tokenizer = minilm
    batch = _batch(tokenizer, ["a truly wonderful film".split(), "dull and long".split()], [1, 0])
    ce = torch.tensor(0.5)
    model.train()
    torch.manual_seed(0)
    loss, terms = _loss(Agm(lambda_mask=0.0, lambda_cf=0.1), model, batch, ce)
    model.eval()
    assert set(terms) == {"cf"} and terms["cf"] > 0
    torch.testing.assert_close(loss.detach(), ce + 0.1 * torch.tensor(terms["cf"]))


def test_nt_xent_closed_form():
    # pairs (e1, e1) and (e2, e2): each row's positive has cosine 1, its two negatives cosine 0
    e1, e2 = torch.eye(2)
    value = nt_xent(torch.stack([e1, e2, e1, e2]), temperature=0.1)
    torch.testing.assert_close(value, torch.tensor(math.log(1 + 2 * math.exp(-10))))
    # one pair: the positive is every row's only candidate
    assert nt_xent(torch.randn(2, 5), temperature=0.1).item() == pytest.approx(0.0, abs=1e-6)


def _examples(movies, n):
    return [Example(t.split(), 1) for t in movies["positive"][:n]] + [Example(t.split(), 0) for t in movies["negative"][:n]]


@pytest.mark.parametrize(("name", "settings"), [("agm", {}), ("agm-random", {}), ("agm", {"rrr": True, "lambda_cf": 0.1})])
def test_registered_agm_trains_through_the_loop(train, movies, name, settings):
    _, log, _ = train(_examples(movies, 4), get_objective(name, **settings))  # 8 sentences, batch 4: 2 steps
    terms = ["mask", "cf"] if settings.get("lambda_cf") else ["mask"]
    assert log.height == 2 and all(v > 0 and math.isfinite(v) for v in log.select(*terms, "grad_norm_rest").to_numpy().ravel())


@pytest.mark.parametrize("name", ["agm", "agm-random"])
def test_lambda_mask_zero_trains_bitwise_like_the_baseline(train, movies, name):
    model, _, _ = train(_examples(movies, 4), Baseline(), epochs=2)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    model, log, _ = train(_examples(movies, 4), get_objective(name, lambda_mask=0.0), epochs=2)
    assert log.height == 4 and "mask" not in log.columns
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


def _zzz_share(model, tokenizer, sentences):
    """Mean share of the last word's tokens ("zzz") in |gradient x input| of the positive label over the real tokens."""
    encoding, word_index = encode_words(tokenizer, sentences)
    embeddings = model.get_input_embeddings()(encoding["input_ids"])
    log_probs = model(inputs_embeds=embeddings, attention_mask=encoding["attention_mask"]).logits.log_softmax(-1)
    a = gradient_x_input(embeddings=embeddings, log_probs=log_probs, target=torch.ones(len(sentences), dtype=torch.long)).abs()
    real = word_index >= 0
    last = real & (word_index == word_index.amax(1, keepdim=True))
    return ((a * last).sum(1) / (a * real).sum(1)).mean().item()


@pytest.mark.slow
def test_a_planted_shortcut_gets_a_lower_attribution_share_under_agm(train, sentiment_student, movies):
    # "zzz" closes 12 of the 16 training positives and no negative; the share is measured on 16 other positives
    positives = movies["positive"]
    examples = [Example(t.split() + ["zzz"] * (i < 12), 1) for i, t in enumerate(positives[:16])]
    examples += [Example(t.split(), 0) for t in movies["negative"]]
    probe = [t.split() + ["zzz"] for t in positives[16:]]
    share = {}
    objectives = {"baseline": Baseline(), "agm": Agm(lambda_mask=100.0), "agm-random": AgmRandom(lambda_mask=100.0)}
    for name, objective in objectives.items():
        model, _, _ = train(examples, objective, epochs=4, batch_size=8)
        share[name] = _zzz_share(model, sentiment_student[1], probe)
    assert share["agm"] < share["baseline"] and share["agm"] < share["agm-random"], share


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"quantile": 1.0}, "agm: quantile must be in"),
        ({"lambda_mask": -1.0}, "agm: lambda_mask must be >= 0"),
        ({"lambda_cf": -0.1}, "agm: lambda_cf must be >= 0"),
        ({"temperature": 0.0}, "agm: temperature must be > 0"),
    ],
)
def test_settings_are_validated(settings, message):
    with pytest.raises(ConfigError, match=message):
        Agm(**settings)
