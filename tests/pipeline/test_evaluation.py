import numpy as np
import polars as pl

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
