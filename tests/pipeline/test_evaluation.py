import numpy as np
import polars as pl
import pytest
import torch

from pipeline.attribution import encode_words, gradient_x_input_words
from pipeline.errors import ConfigError
from pipeline.evaluation import adversarial_accuracy, evaluate_student, self_rationale
from pipeline.params import EvaluationParams
from pipeline.predict import predict_proba

PARAMS = EvaluationParams(ig_steps=4, batch_size=4, fractions=[0.2, 0.5])
TEXTS = ["where is my new card", "what rate do you use for euros", "my top up failed again", "card not here yet"]


def _frame(labels: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"s{i}" for i in range(len(TEXTS))], "text": TEXTS, "label": labels})


def test_self_rationale_is_the_prediction_and_one_score_per_word(minilm):
    model, tokenizer = minilm
    sentences = [t.split() for t in TEXTS]
    probabilities, rationale = self_rationale(model, tokenizer, sentences, params=PARAMS, max_length=32, device="cpu")
    expected = predict_proba(model, tokenizer, sentences, batch_size=4, max_length=32, device="cpu")
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)
    assert [len(r) for r in rationale] == [len(s) for s in sentences] and all(np.isfinite(r).all() for r in rationale)


def test_evaluate_student_scores_the_test_and_validation_sets_and_the_attack_its_attacked_sets(minilm):
    model, tokenizer = minilm
    sentences = [t.split() for t in TEXTS]
    predicted = predict_proba(model, tokenizer, sentences, batch_size=4, max_length=32, device="cpu").argmax(axis=1)
    names = [model.config.id2label[int(i)] for i in predicted]
    wrong = [model.config.id2label[(int(i) + 1) % 3] for i in predicted]
    test = _frame(names)  # every prediction right
    attacked = {"add": test, "replace": _frame(wrong)}
    metrics = evaluate_student(model, tokenizer, test=test, validation=_frame(wrong), params=PARAMS, max_length=32, device="cpu")
    assert list(metrics) == ["accuracy", "validation_accuracy", "comprehensiveness", "sufficiency"]
    assert (metrics["accuracy"], metrics["validation_accuracy"]) == (100.0, 0.0)
    assert all(np.isfinite(v) for v in metrics.values())
    adversarial = adversarial_accuracy(model, tokenizer, attacked, batch_size=4, max_length=32, device="cpu")
    assert adversarial == {"adv_add_accuracy": 100.0, "adv_replace_accuracy": 0.0, "adv_accuracy": 50.0}


def test_profiles_ask_for_targets_groups_and_a_second_rationale(minilm):
    model, tokenizer = minilm
    predicted = predict_proba(model, tokenizer, [t.split() for t in TEXTS], batch_size=4, max_length=32, device="cpu")
    names = [model.config.id2label[int(i)] for i in predicted.argmax(axis=1)]
    wrong = [model.config.id2label[(int(i) + 1) % 3] for i in predicted.argmax(axis=1)]
    # two groups: "a" holds sentences 0-1, "b" 2-3; sentence 3 is labelled wrongly, so group b's label cells differ
    test = _frame(names[:3] + wrong[3:]).with_columns(pl.Series("category", ["a", "a", "b", "b"]))
    params = PARAMS.model_copy(update={"rationales": ["ig", "grad_input"], "group_column": "category"})
    metrics = evaluate_student(model, tokenizer, test=test, validation=test, targets={"other": _frame(wrong)},
                               params=params, max_length=32, device="cpu")
    assert metrics["accuracy"] == 75.0 and metrics["accuracy@other"] == 0.0 and metrics["transfer_gap@other"] == 75.0
    assert metrics["worst_group_accuracy"] == 0.0  # the cell of sentence 3 alone
    cells = {(label, group) for label, group in zip(test["label"], test["category"])}
    assert metrics["average_group_accuracy"] == pytest.approx(100.0 * (len(cells) - 1) / len(cells))
    for suffix in ("", "_grad_input"):
        for at in ("", "@other"):
            assert np.isfinite(metrics[f"comprehensiveness{suffix}{at}"]) and np.isfinite(metrics[f"sufficiency{suffix}{at}"])
    with pytest.raises(ConfigError, match="evaluation.group_column: the test split has no column 'category'"):
        evaluate_student(model, tokenizer, test=_frame(names), validation=test, params=params, max_length=32, device="cpu")


def test_word_level_gradient_x_input_sums_each_words_tokens(minilm):
    model, tokenizer = minilm
    sentences = [["unbelievably", "slow", "transfer"], ["card"]]
    scores = gradient_x_input_words(model, tokenizer, sentences=sentences, labels=torch.tensor([0, 2]), batch_size=2)
    assert [s.shape for s in scores] == [(3,), (1,)]
    # by hand, sentence 0 alone: e . d log p_0 / d e per token, then the word's tokens added up
    encoding, word_index = encode_words(tokenizer, sentences[:1])
    embeddings = model.get_input_embeddings()(encoding["input_ids"]).detach().requires_grad_()
    model.eval()
    log_p = model(inputs_embeds=embeddings, attention_mask=encoding["attention_mask"]).logits.log_softmax(-1)[0, 0]
    (grad,) = torch.autograd.grad(log_p, embeddings)
    tokens = (embeddings * grad).sum(-1)[0]
    expected = [tokens[word_index[0] == w].sum().item() for w in range(3)]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-4, atol=1e-7)
