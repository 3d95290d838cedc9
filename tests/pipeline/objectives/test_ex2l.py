import pytest
import torch
import torch.nn.functional as F

from pipeline.attribution import encode_words
from pipeline.errors import ConfigError
from pipeline.gradcam import hidden_and_pooled, text_grad_cam
from pipeline.objectives.ex2l import Ex2l, dice

SENTENCES = [["the", "food", "was", "great"], ["terrible", "battery", "life"]]


def test_grad_cam_equals_its_closed_form_for_a_linear_head_on_cls():
    # z = W H_[CLS]: dz_k/dH_t = W_k at t = 0 only, so w_k = W_k / n (n non-padding tokens) and
    # G_t = ReLU(H_t . W_k) / max over the real tokens
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 4, dtype=torch.float64)
    weight = torch.randn(3, 4, dtype=torch.float64)
    hidden[1, 1] = weight[0]  # a positive score on the second sentence's one real token
    hidden.requires_grad_()
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    real = torch.tensor([[False, True, True, True, False], [False, True, False, False, False]])
    target = torch.tensor([2, 0])
    cam = text_grad_cam(hidden=hidden, scores=hidden[:, 0] @ weight.T, target=target, attention_mask=attention_mask,
                        real=real, create_graph=False)
    raw = torch.relu(torch.einsum("btd,bd->bt", hidden.detach(), weight[target])) * real
    expected = raw / raw.amax(1, keepdim=True)
    torch.testing.assert_close(cam, expected, rtol=1e-12, atol=1e-12)
    assert cam[1, 1] == 1.0 and (cam[~real] == 0).all()
    flat = text_grad_cam(hidden=hidden, scores=(hidden.sum((1, 2)) * 0).unsqueeze(1), target=torch.tensor([0, 0]),
                         attention_mask=attention_mask, real=real, create_graph=False)
    assert torch.equal(flat, torch.zeros_like(flat))  # an all-zero map stays 0, not 0 / 0


def test_grad_cam_is_differentiable_with_create_graph():
    hidden = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    real = torch.tensor([[False, True, True, False]])
    cam = text_grad_cam(hidden=hidden, scores=hidden[:, 0] @ weight.T, target=torch.tensor([1]),
                        attention_mask=torch.ones(1, 4), real=real, create_graph=True)
    (grad,) = torch.autograd.grad(cam.sum(), weight)
    assert grad.abs().sum() > 0


def test_dice_is_one_for_identical_zero_for_disjoint_and_differentiable():
    mask = torch.tensor([[True, True, True, False]])
    a = torch.tensor([[0.2, 1.0, 0.5, 9.0]])
    assert dice(a, a, mask=mask).item() == pytest.approx(1.0)
    assert dice(torch.tensor([[1.0, 0.0, 0.3, 0.0]]), torch.tensor([[0.0, 0.7, 0.0, 5.0]]), mask=mask).item() == 0.0
    first = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    second = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: dice(x, y, mask=torch.ones(2, 5, dtype=torch.bool)), (first, second))


def test_the_pooled_representation_is_what_the_classifier_reads(minilm):
    model, tokenizer = minilm
    encoding, _ = encode_words(tokenizer, SENTENCES)
    _, pooled = hidden_and_pooled(model, input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"])
    logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
    torch.testing.assert_close(model.classifier(pooled), logits)


def _terms(model, tokenizer, objective, head):
    encoding, word_index = encode_words(tokenizer, SENTENCES)
    labels, confounders = torch.tensor([2, 0]), torch.tensor([1, 0])
    torch.manual_seed(7)  # the loop's forward and eX2L's train-mode forward draw their dropout masks
    logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits
    ce = F.cross_entropy(logits, labels)
    loss, logged = objective.terms(
        model=model, head=head, input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
        word_index=word_index, labels=labels, confounders=confounders, ce=ce,
    )
    return loss, logged, ce


def test_lambda_zero_is_exactly_the_multitask_loss(minilm):
    model, tokenizer = minilm
    torch.manual_seed(0)
    head = Ex2l().confounder_head(model=model, n_values=2)
    model.train()
    try:
        multitask, logged, ce = _terms(model, tokenizer, Ex2l(lam=0.0), head)
        torch.manual_seed(7)
        encoding, _ = encode_words(tokenizer, SENTENCES)
        model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"])  # the same dropout draws
        _, pooled = hidden_and_pooled(model, input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"])
        reference = ce + 1.0 * F.cross_entropy(head(model.dropout(pooled)), torch.tensor([1, 0]))
        assert torch.equal(multitask, reference)
        assert 0 <= logged["dice"] <= 1
        full, logged_full, _ = _terms(model, tokenizer, Ex2l(lam=1.0), head)
        assert full.item() == pytest.approx(multitask.item() + logged_full["dice"], rel=1e-5)
    finally:
        model.eval()


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="lam must be >= 0"):
        Ex2l(lam=-1.0)
    with pytest.raises(ConfigError, match="column 'category' has 1 value"):
        Ex2l().confounder_head(model=None, n_values=1)
    assert Ex2l(confounder="veracity").columns == ("veracity",)
