import polars as pl
import pytest
import torch
import torch.nn.functional as F

from pipeline.attribution.attribution import encode_words
from pipeline.attribution.gradcam import empty_maps, grad_cam_map, hidden_and_pooled, text_grad_cam
from pipeline.errors import ConfigError
from pipeline.models import eval_mode
from pipeline.training.objectives import get_objective, objective_class
from pipeline.training.objectives.base import Batch, Task
from pipeline.training.objectives.ex2l import Ex2l, dice
from pipeline.training.training import Example, set_seed
from tests.pipeline.training.objectives.conftest import TASK as PRODUCTS

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


def test_the_floored_map_spans_zero_to_one_even_when_every_score_is_negative():
    # c on three real tokens, all negative: the plain map is empty (the Dice's degenerate optimum), the floored
    # one is (c - min) / (max - min); special and padding tokens stay 0 however low their score
    raw = torch.tensor([[-9.0, -3.0, -1.0, -2.0, -9.0], [5.0, 2.0, 4.0, 0.5, 0.0]])
    real = torch.tensor([[False, True, True, True, False], [False, True, True, True, False]])
    plain = grad_cam_map(raw, real=real)
    assert torch.equal(plain[0], torch.zeros(5)) and empty_maps(plain, real=real).tolist() == [True, False]
    floored = grad_cam_map(raw, real=real, shift=True)
    torch.testing.assert_close(floored, torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.0], [0.0, 1.5 / 3.5, 1.0, 0.0, 0.0]]))
    assert not empty_maps(floored, real=real).any()


def _reviews(frame: pl.DataFrame, per_cell: int, *, seed: int) -> list[Example]:
    """``per_cell`` reviews per label x category, their first 32 words (the ex2l profile's max_words)."""
    rows = pl.concat([cell.sample(per_cell, seed=seed) for _, cell in frame.group_by("label", "category", maintain_order=True)])
    return [Example(text.split()[:32], int(label == "positive"), columns={"category": category})
            for text, label, category in rows.select("text", "label", "category").iter_rows()]


def _empty_map_shares(model, head, examples, *, tokenizer, layer) -> list[float]:
    encoding, word_index = encode_words(tokenizer, [e.words for e in examples], max_length=64)
    labels = torch.tensor([e.label for e in examples])
    categories = torch.tensor([PRODUCTS.column_values["category"].index(e.columns["category"]) for e in examples])
    real = word_index >= 0
    with eval_mode(model):
        hidden, pooled = hidden_and_pooled(model, input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                                           layer=layer)
        maps = [text_grad_cam(hidden=hidden, scores=scores, target=target, attention_mask=encoding["attention_mask"],
                              real=real, create_graph=False)
                for scores, target in ((model.classifier(pooled), labels), (head(pooled), categories))]
    return [empty_maps(m, real=real).float().mean().item() for m in maps]


def test_training_ex2l_does_not_switch_its_grad_cam_maps_off(shared_data, train, sentiment_student):
    """Issue 22: with Grad-CAM on the last layer (where only [CLS] reaches the logits) and no floor, eight steps
    of eX2L on products reviews empty a large share of the training batches' maps (the Dice met by switching
    them off), and most label maps of held-out reviews. On the layer before the last, with the floor, fewer
    than 5 % of the training batches' plain Grad-CAM maps are all zero at every step."""
    tokenizer = sentiment_student[1]
    train_set = _reviews(pl.read_parquet(shared_data / "sentiment" / "products_amazon" / "train.parquet"), 4, seed=0)
    held_out = _reviews(pl.read_parquet(shared_data / "sentiment" / "products_amazon" / "test.parquet"), 4, seed=1)
    logs, shares = {}, {}
    for name, objective in (("before", Ex2l(layer=-1, map_floor=False)), ("after", Ex2l())):
        model, logs[name], modules = train(train_set, objective, epochs=2, lr=3e-4, batch_size=8, max_length=64)
        shares[name] = _empty_map_shares(model, modules["confounder"], held_out, tokenizer=tokenizer, layer=objective.layer)
    assert (logs["after"]["empty_maps"] < 0.05).all(), (logs["after"]["empty_maps"].to_list(), shares)
    assert logs["before"]["empty_maps"].max() > 0.2 and shares["before"][0] > 0.5, shares  # the defect


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
    assert log["empty_maps"].is_between(0, 0.25).all()
    assert set(modules) == {"confounder"} and modules["confounder"].out_features == 4
    assert not torch.equal(modules["confounder"].weight, initial)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="lam must be >= 0"):
        Ex2l(lam=-1.0)
    with pytest.raises(ConfigError, match="layer counts from the last"):
        Ex2l(layer=0)
    with pytest.raises(ConfigError, match="column 'category' has 1 value"):
        Ex2l().modules(model=None, task=Task(num_labels=2, column_values={"category": ("books",)}))
    assert Ex2l(confounder="veracity").columns == ("veracity",)


def test_the_multitask_variant_is_ex2l_at_lambda_zero_under_its_own_name():
    variant = get_objective("ex2l-multitask", mu=0.5)
    assert isinstance(variant, Ex2l) and (variant.lam, variant.mu) == (0.0, 0.5)
    assert objective_class("ex2l-multitask").display != objective_class("ex2l").display
    with pytest.raises(ConfigError, match="ex2l-multitask: lam is 0 by definition"):
        get_objective("ex2l-multitask", lam=1.0)
