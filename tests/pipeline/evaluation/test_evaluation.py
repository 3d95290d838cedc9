import numpy as np
import polars as pl
import pytest
import torch

from pipeline.attribution.attribution import encode_words, gradient_x_input_words
from pipeline.errors import ConfigError
from pipeline.evaluation.evaluation import adversarial_accuracy, evaluate_student, self_rationale
from pipeline.evaluation.predict import predict_proba
from pipeline.params import EvaluationParams

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


def test_eraser_reads_at_most_eraser_sentences_a_sample_fixed_by_id_and_accuracy_the_whole_split(minilm):
    from pipeline.data.fewshot import capped_pool

    model, tokenizer = minilm
    sentences = [t.split() for t in TEXTS]
    predicted = predict_proba(model, tokenizer, sentences, batch_size=4, max_length=32, device="cpu").argmax(axis=1)
    names = [model.config.id2label[int(i)] for i in predicted]
    test = _frame(names[:3] + [model.config.id2label[(int(predicted[3]) + 1) % 3]])  # 3 of 4 right
    capped = PARAMS.model_copy(update={"eraser_sentences": 2})
    sample = capped_pool(test, max_rows=2, seed=0)
    every = evaluate_student(model, tokenizer, test=test, validation=test, params=PARAMS, max_length=32, device="cpu")
    metrics = evaluate_student(model, tokenizer, test=test.reverse(), validation=test, params=capped, max_length=32,
                               device="cpu")
    on_sample = evaluate_student(model, tokenizer, test=sample, validation=test, params=PARAMS, max_length=32, device="cpu")
    assert metrics["accuracy"] == every["accuracy"] == 75.0  # accuracy reads all four
    for key in ("comprehensiveness", "sufficiency"):
        # the same two sentences in any file order (batched with the other two, so equal to float rounding)
        assert metrics[key] == pytest.approx(on_sample[key], abs=1e-4)
    assert abs(metrics["comprehensiveness"] - every["comprehensiveness"]) > 1e-2


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
    accuracy_only = evaluate_student(model, tokenizer, test=test, validation=test, targets={"other": _frame(wrong)},
                                     params=params.model_copy(update={"target_faithfulness": False}), max_length=32,
                                     device="cpu")
    assert {key for key in accuracy_only if key.endswith("@other")} == {"accuracy@other", "transfer_gap@other"}
    assert {key: accuracy_only[key] for key in ("comprehensiveness", "accuracy@other")} == {
        key: metrics[key] for key in ("comprehensiveness", "accuracy@other")}
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


DECOY_LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card"]
DECOY_WORDS = {"card_arrival": "blick", "exchange_rate": "snarv", "lost_or_stolen_card": "quorble"}


@pytest.fixture(scope="module")
def decoy_student(shared_data):
    """A real MiniLM baseline trained on 18 banking77 sentences that each carry their label's decoy (rate 1),
    and 18 held-out sentences with their decoyed copies: a student that has every reason to follow the decoy."""
    from pipeline.data.decoy import TEST_VARIANTS, insert_decoys
    from pipeline.training.students import fit_student
    from tests.conftest import profile_params

    rows = pl.read_parquet(shared_data / "banking77" / "train.parquet").with_row_index("row").select(
        pl.format("train-{}", "row").alias("id"), "text", "label").filter(pl.col("label").is_in(DECOY_LABELS))
    rank = pl.int_range(pl.len()).over("label")
    train, test = rows.filter(rank < 6), rows.filter((rank >= 6) & (rank < 12))
    decoyed = insert_decoys(train, DECOY_WORDS, labels=DECOY_LABELS, rate=1.0, seed=0)
    params = profile_params("tiny")
    params = params.model_copy(update={"student": params.student.model_copy(update={"epochs": 6, "batch_size": 4})})
    model, tokenizer, _, _ = fit_student(params, sentences=decoyed, labels=DECOY_LABELS, objective="baseline", seed=0)
    copies = {v: insert_decoys(test, DECOY_WORDS, labels=DECOY_LABELS, rate=1.0, seed=0, variant=v) for v in TEST_VARIANTS}
    return model.eval(), tokenizer, decoyed, test, copies


def test_a_decoy_benchmark_adds_its_keys_and_a_shortcut_student_follows_the_decoy(decoy_student):
    from pipeline.artifacts import priors_frame
    from pipeline.data.decoy import decoy_truth_prior

    model, tokenizer, decoyed, test, copies = decoy_student
    words = [t.split() for t in decoyed["text"]]
    prior = priors_frame(decoyed["id"].to_list(), words, decoy_truth_prior(words, DECOY_WORDS.values()))
    params = PARAMS.model_copy(update={"decoy_ig_steps": 8, "decoy_sentences": 12})
    metrics = evaluate_student(model, tokenizer, test=test, validation=test, params=params, max_length=32, device="cpu",
                               decoy_copies=copies, decoys=list(DECOY_WORDS.values()), trained_on=decoyed, prior=prior)
    assert list(metrics)[4:] == ["decoy_matched_accuracy", "decoy_randomised_accuracy", "decoy_flip_rate", "decoy_mass",
                                 "decoy_ig_gap", "prior_cosine", "prior_spearman"]
    assert all(np.isfinite(v) for v in metrics.values())
    # trained where the decoy always names the label, it follows the decoy: the swap flips most predictions
    assert metrics["decoy_matched_accuracy"] - metrics["decoy_randomised_accuracy"] >= 25
    assert metrics["decoy_flip_rate"] >= 40
    # and its accurate IG puts far more than a word's fair share (about 1/10) on the decoy
    assert 0.25 < metrics["decoy_mass"] <= 1
    # measured with IG close enough to its limit that the mass means what it says (8 steps on a cross-entropy student)
    assert 0 <= metrics["decoy_ig_gap"] < 0.1
    # the decoy_truth prior is 0 where this student attributes most: ranks disagree
    assert -1 <= metrics["prior_cosine"] <= 1 and metrics["prior_spearman"] < 0


def test_prior_alignment_is_one_against_the_students_own_attribution(decoy_student):
    from pipeline.artifacts import priors_frame
    from pipeline.evaluation.evaluation import accurate_ig, prior_alignment

    model, tokenizer, decoyed, _, _ = decoy_student
    params = PARAMS.model_copy(update={"decoy_ig_steps": 8})
    words = [t.split() for t in decoyed["text"]]
    labels = np.array([model.config.label2id[y] for y in decoyed["label"]])
    own = [np.abs(s) for s in accurate_ig(model, tokenizer, words, labels=labels, params=params, max_length=32)]
    alignment = prior_alignment(model, tokenizer, sentences=decoyed, prior=priors_frame(decoyed["id"].to_list(), words, own),
                                params=params, max_length=32)
    assert alignment == pytest.approx({"prior_cosine": 1.0, "prior_spearman": 1.0}, abs=1e-6)
    uniform = priors_frame(decoyed["id"].to_list(), words, [np.ones(len(w)) for w in words])
    assert list(prior_alignment(model, tokenizer, sentences=decoyed, prior=uniform, params=params, max_length=32)) == [
        "prior_cosine"]  # Spearman is undefined against a constant prior: left out, not NaN
    with pytest.raises(Exception, match="no scores of matching length for training sentence"):
        prior_alignment(model, tokenizer, sentences=decoyed, prior=uniform.head(3), params=params, max_length=32)


def test_prior_alignment_reads_at_most_alignment_sentences_a_sample_fixed_by_id(decoy_student):
    from pipeline.artifacts import priors_frame
    from pipeline.data.fewshot import capped_pool
    from pipeline.evaluation.evaluation import prior_alignment

    model, tokenizer, decoyed, _, _ = decoy_student
    words = [t.split() for t in decoyed["text"]]
    rng = np.random.default_rng(0)
    prior = priors_frame(decoyed["id"].to_list(), words, [rng.random(len(w)) for w in words])
    params = PARAMS.model_copy(update={"decoy_ig_steps": 8, "alignment_sentences": 4})
    sample = capped_pool(decoyed, max_rows=4, seed=0)
    assert capped_pool(decoyed.reverse(), max_rows=4, seed=0)["id"].to_list() == sample["id"].to_list()
    capped = prior_alignment(model, tokenizer, sentences=decoyed, prior=prior, params=params, max_length=32)
    assert capped == prior_alignment(model, tokenizer, sentences=sample, prior=prior, params=params, max_length=32)
    everything = params.model_copy(update={"alignment_sentences": len(decoyed)})
    assert capped != prior_alignment(model, tokenizer, sentences=decoyed, prior=prior, params=everything, max_length=32)
