import pytest
import torch
import torch.nn.functional as F

from pipeline.attribution import encode_words
from pipeline.errors import ConfigError
from pipeline.gradcam import hidden_and_pooled, text_grad_cam
from pipeline.objectives import get_objective, objective_class
from pipeline.objectives.base import Batch, Task
from pipeline.objectives.ex2l import Ex2l, dice
from pipeline.training import set_seed
from tests.pipeline.objectives.conftest import TASK as PRODUCTS

SENTENCES = [["the", "food", "was", "great"], ["terrible", "battery", "life"]]
TASK = Task(num_labels=3, column_values={"category": ("books", "dvd")})


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


def _loss(model, tokenizer, objective, modules):
    encoding, word_index = encode_words(tokenizer, SENTENCES)
    batch = Batch(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"], labels=torch.tensor([2, 0]),
                  word_index=word_index, columns={"category": torch.tensor([1, 0])})
    torch.manual_seed(7)  # the loop's forward and eX2L's train-mode forward draw their dropout masks
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    ce = F.cross_entropy(logits, batch.labels)
    loss, logged = objective.loss(model=model, modules=modules, batch=batch, logits=logits, ce=ce, phase="main", epoch=0)
    return loss, logged, ce, batch


def test_lambda_zero_is_exactly_the_multitask_loss(minilm):
    model, tokenizer = minilm
    torch.manual_seed(0)
    modules = {name: extra.module for name, extra in Ex2l().modules(model=model, task=TASK).items()}
    model.train()
    try:
        multitask, logged, ce, batch = _loss(model, tokenizer, Ex2l(lam=0.0), modules)
        torch.manual_seed(7)
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)  # the same dropout draws
        _, pooled = hidden_and_pooled(model, input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        reference = ce + 1.0 * F.cross_entropy(modules["confounder"](model.dropout(pooled)), batch.columns["category"])
        assert torch.equal(multitask, reference)
        assert 0 <= logged["dice"] <= 1
        full, logged_full, _, _ = _loss(model, tokenizer, Ex2l(lam=1.0), modules)
        assert full.item() == pytest.approx(multitask.item() + logged_full["dice"], rel=1e-5)
    finally:
        model.eval()


def test_two_steps_through_the_training_loop_train_both_heads(train_products, sentiment_student):
    objective = get_objective("ex2l", confounder="category")
    set_seed(0)  # the loop seeds, then draws the head
    initial = objective.modules(model=sentiment_student[0], task=PRODUCTS)["confounder"].module.weight.clone()
    _, log, modules = train_products(objective)
    assert len(log) == 2 and log["ce_confounder"].is_finite().all() and log["dice"].is_between(0, 1).all()
    assert set(modules) == {"confounder"} and modules["confounder"].out_features == 4
    assert not torch.equal(modules["confounder"].weight, initial)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="lam must be >= 0"):
        Ex2l(lam=-1.0)
    with pytest.raises(ConfigError, match="column 'category' has 1 value"):
        Ex2l().modules(model=None, task=Task(num_labels=2, column_values={"category": ("books",)}))
    assert Ex2l(confounder="veracity").columns == ("veracity",)


def test_the_multitask_variant_is_ex2l_at_lambda_zero_under_its_own_name():
    variant = get_objective("ex2l-multitask", mu=0.5)
    assert isinstance(variant, Ex2l) and (variant.lam, variant.mu) == (0.0, 0.5)
    assert objective_class("ex2l-multitask").display != objective_class("ex2l").display
    with pytest.raises(ConfigError, match="ex2l-multitask: lam is 0 by definition"):
        get_objective("ex2l-multitask", lam=1.0)
