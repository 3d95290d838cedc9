import pytest
import torch

from pipeline.attribution import encode_words, integrated_gradients, pad_baseline, tokens_to_words
from pipeline.errors import ConfigError
from pipeline.objectives import get_objective, objective_class
from pipeline.objectives.base import Batch
from pipeline.objectives.baseline import Baseline
from pipeline.objectives.guided import Guided


def test_the_registry_builds_objectives_with_their_settings():
    assert get_objective("baseline") == Baseline()
    settings = {"beta": 0.5, "ig_steps": 3, "normalisation": "minmax"}
    assert get_objective("guided", **settings) == Guided(**settings)
    assert objective_class("guided").needs_prior and not objective_class("baseline").needs_prior


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("no-such-objective", {}, "unknown objective 'no-such-objective'"),
        ("guided", {"gamma": 1.0}, r"student.settings.guided: unknown setting 'gamma' \(known: beta, ig_steps, normalisation\)"),
        ("baseline", {"beta": 1.0}, "student.settings.baseline: unknown setting 'beta'"),
        ("guided", {"beta": -1.0}, "beta must be >= 0"),
        ("guided", {"ig_steps": 0}, "ig_steps must be >= 1"),
        ("guided", {"normalisation": "l1"}, "normalisation must be"),
    ],
)
def test_get_objective_rejects_bad_names_and_settings(name, params, message):
    with pytest.raises(ConfigError, match=message):
        get_objective(name, **params)


def test_guided_loss_is_ce_plus_beta_times_the_word_mse(make_minilm):
    model, tokenizer, _ = make_minilm(2)
    sentences = ["card declined again".split(), "refund".split()]
    encoding, word_index = encode_words(tokenizer, sentences)
    batch = Batch(
        input_ids=encoding["input_ids"],
        attention_mask=encoding["attention_mask"],
        labels=torch.tensor([1, 0]),
        word_index=word_index,
        prior=torch.tensor([[0.0, 3.0, 4.0], [2.0, 0.0, 0.0]]),
    )
    model.train()
    ce = torch.tensor(0.7)
    loss, parts = Guided(beta=2.0, ig_steps=4).loss(model=model, modules={}, batch=batch, logits=torch.zeros(2, 2), ce=ce,
                                                   phase="main", epoch=0)
    assert model.training  # the self-attribution ran with dropout off, then the mode came back
    assert loss.requires_grad and set(parts) == {"align"}
    torch.testing.assert_close(loss, ce + 2.0 * torch.tensor(parts["align"]))
    # by hand: per-sentence mean over its real words, then the batch mean; the prior [0, 3, 4]
    # normalises to [0, .6, .8], and the one-word sentence gives [1] on both sides (MSE 0)
    model.eval()
    tokens = integrated_gradients(
        model,
        input_ids=batch.input_ids,
        baseline_ids=pad_baseline(input_ids=batch.input_ids, word_index=word_index, pad_token_id=tokenizer.pad_token_id),
        attention_mask=batch.attention_mask,
        target=batch.labels,
        steps=4,
    )
    own, _ = tokens_to_words(tokens, word_index, n_words=3)
    first = own[0].abs() / own[0].abs().norm()
    expected = ((first - torch.tensor([0.0, 0.6, 0.8])) ** 2).mean() / 2
    assert parts["align"] == pytest.approx(expected.item(), rel=1e-5)
    baseline_loss, baseline_parts = Baseline().loss(model=model, modules={}, batch=batch, logits=torch.zeros(2, 2), ce=ce,
                                                    phase="main", epoch=0)
    assert baseline_loss is ce and baseline_parts == {}
