import math
from types import SimpleNamespace

import pytest
import torch

from pipeline.attribution.attribution import encode_words
from pipeline.errors import ConfigError
from pipeline.training.objectives import get_objective
from pipeline.training.objectives.base import Batch
from pipeline.training.objectives.regex import Regex, attention_attribution_kl, virtual_adversarial_perturbation
from pipeline.training.objectives.selection import lowest, replace
from pipeline.training.training import Example

ALL = ("input_grad", "vat", "cons", "att")


class Double(torch.nn.Module):
    """The stand-in's embedding block: X = 2 E (where BERT adds positions and applies its LayerNorm)."""

    def forward(self, embeddings):
        return 2 * embeddings


class MeanPoolLinear(torch.nn.Module):
    """A stand-in classifier with the student's interface: a linear head on the mean of X = 2 E over the
    attended tokens, so that d CE_b / d X_bt = W^T (p_b - onehot(y_b)) / n_b on them (and twice that w.r.t. E)."""

    def __init__(self, *, vocab: int = 12, hidden: int = 5, classes: int = 3):
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocab, hidden)
        self.base_model = SimpleNamespace(embeddings=Double())
        self.head = torch.nn.Linear(hidden, classes)
        self.config = SimpleNamespace(pad_token_id=0)

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, *, input_ids=None, inputs_embeds=None, attention_mask, output_attentions=False):
        x = self.base_model.embeddings(self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)
        return SimpleNamespace(logits=self.head((x * weights).sum(1) / weights.sum(1)))


def _batch(input_ids, attention_mask, labels, word_index):
    return Batch(input_ids=input_ids, attention_mask=attention_mask, labels=labels, word_index=word_index)


def _loss(objective, model, batch, ce):
    return objective.loss(model=model, modules={}, batch=batch, logits=None, ce=ce, phase="main", epoch=0)


def test_input_gradient_term_is_taken_after_the_embedding_block_and_equals_its_closed_form():
    """Issue 22: the gradient w.r.t. the raw word embeddings E is scaled by the embedding block (MiniLM's LayerNorm:
    ~80x in the squared norm); the penalty is the one w.r.t. X, the block's output (here X = 2 E: a quarter of E's)."""
    torch.manual_seed(0)
    model = MeanPoolLinear()
    input_ids = torch.tensor([[1, 4, 5, 6, 2], [1, 7, 2, 0, 0]])
    attention_mask = (input_ids != 0).long()
    labels = torch.tensor([2, 0])
    batch = _batch(input_ids, attention_mask, labels, torch.tensor([[-1, 0, 1, 2, -1], [-1, 0, -1, -1, -1]]))
    ce = torch.tensor(0.3)
    loss, terms = _loss(Regex(beta=0.0, gamma=0.0, delta=0.0, alpha=2.0), model, batch, ce)
    # sum_t ||W^T (p - y) / n||^2 over the n attended tokens = ||W^T (p - y)||^2 / n, then the batch mean (w.r.t. E: 4x)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    residual = logits.softmax(-1) - torch.nn.functional.one_hot(labels, 3)
    expected = ((residual @ model.head.weight).pow(2).sum(1) / attention_mask.sum(1)).mean()
    assert set(terms) == {"input_grad"}
    torch.testing.assert_close(torch.tensor(terms["input_grad"]), expected.detach())
    torch.testing.assert_close(loss, ce + 2.0 * expected)
    (grad,) = torch.autograd.grad(loss, model.head.weight)  # double backward reaches the parameters
    assert grad.abs().sum() > 0


@pytest.fixture(scope="module")
def batch(minilm):
    _, tokenizer = minilm
    encoding, word_index = encode_words(tokenizer, ["a truly wonderful and moving film".split(), "dull , long".split()])
    return _batch(encoding["input_ids"], encoding["attention_mask"], torch.tensor([1, 0]), word_index)


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0, 3.0])
def test_virtual_adversarial_perturbation_has_norm_epsilon_on_the_real_tokens(minilm, batch, epsilon):
    model, _ = minilm
    real = batch.word_index >= 0
    clean = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.log_softmax(-1).detach()
    r = virtual_adversarial_perturbation(
        model, shape=(*batch.input_ids.shape, model.config.hidden_size), input_ids=batch.input_ids,
        attention_mask=batch.attention_mask, real=real, clean=clean, xi=1e-3, epsilon=epsilon,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(r.flatten(1).norm(dim=1), torch.full((2,), epsilon))
    assert not r[~real].any()


def test_epsilon_zero_gives_a_zero_vat_term(minilm, batch):
    model, _ = minilm
    ce = torch.tensor(0.3)
    loss, terms = _loss(Regex(alpha=0.0, gamma=0.0, delta=0.0, epsilon=0.0), model, batch, ce)
    assert terms == {"vat": 0.0}
    assert loss.item() == ce.item()


def test_salient_masking_takes_the_lowest_real_tokens_never_special_or_padding():
    # [CLS] five words [SEP] [PAD]; [CLS], [SEP] and [PAD] score lowest. K = 40 %: floor(2.0) = 2 words,
    # floor(1.2) = 1 of the second sentence's 3 words (a tie goes to the earlier token)
    scores = torch.tensor([[0.0, 0.5, 0.1, 0.9, 0.3, 0.7, 0.0, 0.0], [0.0, 0.4, 0.2, 0.2, 0.0, 0.0, 0.0, 0.0]])
    word_index = torch.tensor([[-1, 0, 1, 2, 3, 4, -1, -1], [-1, 0, 1, 2, -1, -1, -1, -1]])
    selected = lowest(scores, real=word_index >= 0, fraction=0.4)
    assert selected.nonzero().tolist() == [[0, 2], [0, 4], [1, 2]]
    input_ids = torch.arange(16).view(2, 8) + 100
    masked = replace(input_ids, selected=selected, token_id=0)
    assert (masked == 0).nonzero().tolist() == [[0, 2], [0, 4], [1, 2]]


def test_attention_attribution_kl_is_zero_for_equal_distributions_on_the_real_tokens():
    real = torch.tensor([[False, True, True, True, False, False]])
    scores = torch.tensor([[0.0, 0.2, 0.6, 0.2, 0.0, 0.0]])
    # the same shape on R, any mass on [CLS], [SEP] and padding: renormalised away
    attention = torch.tensor([[0.3, 0.07, 0.21, 0.07, 0.35, 0.0]])
    torch.testing.assert_close(attention_attribution_kl(attention, scores, real=real), torch.tensor(0.0), atol=1e-6, rtol=0)
    other = torch.tensor([[0.3, 0.21, 0.07, 0.07, 0.35, 0.0]])
    assert attention_attribution_kl(other, scores, real=real) > 0.1


@pytest.mark.parametrize("attribution", ["ig", "grad_input"])
def test_a_zero_weight_removes_exactly_its_term(minilm, batch, attribution):
    model, _ = minilm
    ce = torch.tensor(0.3)
    weights = {"alpha": 1.5, "beta": 2.0, "gamma": 0.5, "delta": 0.25}
    model.train()

    def run(**zero):
        torch.manual_seed(0)  # the same VAT direction in every run
        loss, terms = _loss(Regex(attribution=attribution, ig_steps=4, **(weights | zero)), model, batch, ce)
        assert model.training and all(value > 0 for value in terms.values())
        expected = ce + sum(weights[weight] * terms[term] for term, weight in zip(ALL, weights) if term in terms)
        torch.testing.assert_close(loss.detach(), expected)
        return terms

    full = run()
    assert set(full) == set(ALL)
    for term, weight in zip(ALL, weights):
        without = run(**{weight: 0.0})
        assert set(without) == set(ALL) - {term}
        for kept in without:
            assert without[kept] == pytest.approx(full[kept], rel=1e-5)
    assert _loss(Regex(alpha=0.0, beta=0.0, gamma=0.0, delta=0.0), model, batch, ce) == (ce, {})
    model.eval()


def test_the_ablation_is_regex_without_the_explanation_terms(minilm, batch):
    model, _ = minilm
    ablation = get_objective("regex-no-explanation", attribution="grad_input")
    assert vars(ablation) == vars(Regex(gamma=0.0, delta=0.0, attribution="grad_input")) and ablation.display != Regex.display
    torch.manual_seed(0)
    _, terms = _loss(ablation, model, batch, torch.tensor(0.3))
    assert set(terms) == {"input_grad", "vat"}
    model.eval()


@pytest.mark.parametrize("attribution", ["ig", "grad_input"])
def test_regex_trains_through_the_loop(train, movies, attribution):
    examples = [Example(t.split(), 1) for t in movies["positive"][:4]] + [Example(t.split(), 0) for t in movies["negative"][:4]]
    _, log, _ = train(examples, get_objective("regex", attribution=attribution))  # 8 sentences, batch 4: 2 steps
    values = log.select(*ALL, "grad_norm_rest").to_numpy().ravel()
    assert log.height == 2 and all(v > 0 and math.isfinite(v) for v in values)


def _training_ce(model, tokenizer, examples):
    encoding, _ = encode_words(tokenizer, [e.words for e in examples])
    with torch.no_grad():
        logits = model.eval()(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(logits, torch.tensor([e.label for e in examples])).item()


def test_regex_fits_a_tiny_real_dataset_like_the_baseline(train, movies, sentiment_student):
    """Issue 22: REGEX's training CE stayed at 0.69 (the input-gradient penalty and VAT on the raw word embeddings,
    the attention term at delta = 1): 0.64 on this test's data (0.69 = chance), against the baseline's 0.18.
    With the defaults, 12 steps on 24 SST-2 sentences bring the training set's CE down by at least three
    quarters of the baseline's drop from chance (measured: 0.19; 0.27 at delta = 0.1)."""
    examples = [Example(t.split(), 1) for t in movies["positive"][:12]] + [Example(t.split(), 0) for t in movies["negative"][:12]]
    tokenizer = sentiment_student[1]
    ce = {}
    for name in ("baseline", "regex"):
        settings = {"attribution": "grad_input"} if name == "regex" else {}
        model, log, _ = train(examples, get_objective(name, **settings), epochs=4, lr=3e-4, batch_size=8)
        ce[name] = _training_ce(model, tokenizer, examples)
    drop = {name: math.log(2) - value for name, value in ce.items()}
    assert drop["baseline"] > 0.3 and drop["regex"] > 0.75 * drop["baseline"], ce


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha": -1.0}, "regex: alpha must be >= 0"),
        ({"delta": -0.1}, "regex: delta must be >= 0"),
        ({"epsilon": -1.0}, "regex: epsilon must be >= 0"),
        ({"xi": 0.0}, "regex: xi must be > 0"),
        ({"mask_fraction": 1.5}, "regex: mask_fraction must be in"),
        ({"attribution": "lime"}, "regex: attribution must be"),
        ({"ig_steps": 0}, "regex: ig_steps must be >= 1"),
    ],
)
def test_settings_are_validated(settings, message):
    with pytest.raises(ConfigError, match=message):
        Regex(**settings)
