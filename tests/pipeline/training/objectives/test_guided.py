import pytest
import torch

from pipeline.attribution.attribution import encode_words, integrated_gradients, pad_baseline, tokens_to_words
from pipeline.errors import ConfigError
from pipeline.training.objectives import get_objective, objective_class
from pipeline.training.objectives.base import Batch
from pipeline.training.objectives.baseline import Baseline
from pipeline.training.objectives.guided import Guided


def test_the_registry_builds_objectives_with_their_settings():
    assert get_objective("baseline") == Baseline()
    settings = {"beta": 0.5, "ig_steps": 3, "normalisation": "minmax"}
    assert get_objective("guided", **settings) == Guided(**settings)
    assert objective_class("guided").needs_prior and not objective_class("baseline").needs_prior


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("no-such-objective", {}, "unknown objective 'no-such-objective'"),
        ("guided", {"gamma": 1.0}, r"student.settings.guided: unknown setting 'gamma' \(known: beta, ig_steps, attribution, "),
        ("baseline", {"beta": 1.0}, "student.settings.baseline: unknown setting 'beta'"),
        ("guided", {"beta": -1.0}, "beta must be >= 0"),
        ("guided", {"ig_steps": 0}, "ig_steps must be >= 1"),
        ("guided", {"normalisation": "l1"}, "normalisation must be"),
        ("guided", {"attribution": "lrp"}, "attribution must be one of ig, gradient_norm"),
        ("guided", {"target": "prob"}, "target must be one of"),
        ("guided", {"alignment": "kl"}, "alignment must be one of"),
        ("guided", {"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ("rrr", {"lam": -1.0}, "lam must be >= 0"),
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
    assert loss.requires_grad and set(parts) == {"align", "own_norm"}
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


def _batch(tokenizer, sentences, labels, prior):
    encoding, word_index = encode_words(tokenizer, sentences)
    return Batch(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"], labels=torch.tensor(labels),
                 word_index=word_index, prior=torch.tensor(prior))


def test_guided_waits_for_its_warmup_then_aligns(make_minilm):
    model, tokenizer, _ = make_minilm(2)
    batch = _batch(tokenizer, ["card declined again".split()], [1], [[0.0, 3.0, 4.0]])
    ce = torch.tensor(0.7)
    objective = Guided(beta=1.0, ig_steps=2, warmup_epochs=1)
    loss, _ = objective.loss(model=model, modules={}, batch=batch, logits=torch.zeros(1, 2), ce=ce, phase="main", epoch=0)
    assert loss is ce
    loss, parts = objective.loss(model=model, modules={}, batch=batch, logits=torch.zeros(1, 2), ce=ce, phase="main", epoch=1)
    assert loss.requires_grad and parts["align"] > 0


@pytest.mark.parametrize("alignment", ["signed_mse", "cosine"])
def test_signed_alignments_penalise_a_negative_attribution_that_abs_would_accept(alignment):
    # the student's word scores are the prior with one sign flipped: |a| matches the prior exactly
    own, prior, mask = torch.tensor([[0.6, -0.8]]), torch.tensor([[0.6, 0.8]]), torch.tensor([[True, True]])
    assert Guided(alignment="abs_mse").misalignment(own, prior, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert Guided(alignment=alignment).misalignment(own, prior, mask).item() > 0.5


def test_the_norm_floor_caps_the_alignment_gradient_of_a_vanishing_attribution():
    prior, mask = torch.tensor([[0.0, 1.0]]), torch.tensor([[True, True]])

    def gradient(floor):
        own = torch.tensor([[1e-4, 2e-4]], requires_grad=True)
        Guided(alignment="signed_mse", norm_floor=floor).misalignment(own, prior, mask).sum().backward()
        return own.grad.norm().item()

    # without a floor the gradient scales like 1 / ||a|| (here ~1e3); a floor of 1 bounds it by ~1
    assert gradient(0.0) > 100 * gradient(1.0)
    assert gradient(1.0) < 1.0


def test_gradient_norm_attribution_is_each_words_whole_input_gradient(make_minilm):
    model, tokenizer, _ = make_minilm(2)
    model.eval()
    sentences = ["card declined again".split(), "refund".split()]
    batch = _batch(tokenizer, sentences, [1, 0], [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    own, mask = Guided(attribution="gradient_norm", target="log_softmax").own_attribution(model, batch)
    assert own.requires_grad and mask.tolist() == [[True, True, True], [True, False, False]]
    # by hand: d log p_y / d embeddings, squared, summed over the word's tokens and hidden units
    embeddings = model.get_input_embeddings()(batch.input_ids).detach().requires_grad_()
    logits = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask).logits
    logits.log_softmax(-1).gather(1, batch.labels[:, None]).sum().backward()
    tokens = (embeddings.grad**2).sum(-1)
    expected, _ = tokens_to_words(tokens, batch.word_index, n_words=3)
    torch.testing.assert_close(own.detach()[mask], expected.sqrt()[mask], rtol=1e-4, atol=1e-7)
