import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pipeline.artifacts import oracle_teacher_dir, student_dir, training_curve_file
from pipeline.errors import DataError
from pipeline.evaluation.predict import predict_proba
from pipeline.training.objectives.base import Task
from pipeline.training.objectives.baseline import Baseline
from pipeline.training.objectives.guided import Guided
from pipeline.training.training import Example, _step_gradients, train_student, write_training_curve

N_LABELS = 4


@pytest.fixture(scope="module")
def examples(shared_data):
    """Two Banking77 training sentences for each of four intents."""
    frame = pl.read_parquet(shared_data / "banking77" / "train.parquet")
    labels = sorted(frame["label"].unique())[:N_LABELS]
    rows = frame.filter(pl.col("label").is_in(labels)).group_by("label", maintain_order=True).head(2)
    return [Example(text.split(), labels.index(label)) for text, label in zip(rows["text"], rows["label"])]


@pytest.fixture(scope="module")
def student(make_minilm):
    """MiniLM and its initial weights; every test restores them before training."""
    return make_minilm(N_LABELS)


TASK = Task(num_labels=N_LABELS)


def _train(student, train, objective, *, epochs=2, seed=0, lr=1e-4, gradient_split=True):
    model, tokenizer, initial = student
    model.load_state_dict(initial)
    model, log, _ = train_student(
        model=model, tokenizer=tokenizer, train=train, objective=objective, task=TASK, epochs=epochs, lr=lr,
        batch_size=4, warmup_fraction=0.25, seed=seed, device="cpu", gradient_split=gradient_split,
    )
    return model, log


def _with_prior(examples, seed=0):
    rng = np.random.default_rng(seed)
    return [e._replace(prior=rng.random(len(e.words))) for e in examples]


@pytest.mark.slow
def test_guided_training_lowers_the_alignment_to_a_fixed_prior(student, examples):
    # one batch of all 8 sentences, so every step measures the alignment on the same sentences;
    # beta = 0 is the control: the same loop without the alignment gradient
    model, tokenizer, initial = student
    align = {}
    for beta in (10.0, 0.0):
        model.load_state_dict(initial)
        _, log, _ = train_student(
            model=model, tokenizer=tokenizer, train=_with_prior(examples), objective=Guided(ig_steps=4, beta=beta), task=TASK,
            epochs=6, lr=2e-4, batch_size=8, warmup_fraction=0.0, seed=0, device="cpu",
        )
        align[beta] = log["align"].to_list()
        # the logged loss is ce + beta * align
        np.testing.assert_allclose(log["loss"], log["ce"] + beta * log["align"], rtol=1e-5)
    assert all(math.isfinite(a) and a > 0 for a in align[10.0])
    assert align[10.0][0] == align[0.0][0]  # same start
    assert align[10.0][-1] < 0.5 * align[10.0][0]
    assert align[0.0][-1] > 0.8 * align[0.0][0]


def test_training_is_deterministic_for_a_seed(student, examples):
    objective = Guided(ig_steps=2)
    train = _with_prior(examples)
    _, first = _train(student, train, objective)
    _, second = _train(student, train, objective)
    _, other_seed = _train(student, train, objective, seed=1)
    assert first.height == 4  # 2 epochs x 2 batches
    assert first.equals(second)
    assert not first["loss"].equals(other_seed["loss"])


def test_baseline_logs_cross_entropy_only_and_a_linear_schedule(student, examples):
    _, log = _train(student, examples, Baseline(), epochs=3, lr=1e-3)
    assert log.columns == ["step", "epoch", "lr", "loss", "ce", "align", "grad_norm", "grad_norm_ce", "grad_norm_rest"]
    assert (log["grad_norm_ce"] > 0).all() and log["grad_norm"].equals(log["grad_norm_ce"]) and (log["grad_norm_rest"] == 0).all()
    assert log["step"].to_list() == list(range(1, 7)) and log["epoch"].to_list() == [0, 0, 1, 1, 2, 2]
    assert log["align"].is_nan().all()  # the baseline has no alignment term
    assert log["loss"].equals(log["ce"])
    # 6 steps, int(0.25 * 6) = 1 warm-up step: lr 0, then linear decay from the peak
    np.testing.assert_allclose(log["lr"], [0.0, 1e-3, 0.8e-3, 0.6e-3, 0.4e-3, 0.2e-3], atol=1e-12)


def test_guided_method_rejects_missing_or_misaligned_priors(student, examples):
    model, tokenizer, _ = student
    train = _with_prior(examples)
    words, prior = train[3].words, train[3].prior
    cases = [(train[3]._replace(prior=None), "no prior"),
             (train[3]._replace(prior=prior[:-1]), f"a prior of {len(words) - 1} scores")]
    for broken, message in cases:
        with pytest.raises(DataError, match=f"training example 3: .*{message}"):
            train_student(
                model=model, tokenizer=tokenizer, train=train[:3] + [broken], objective=Guided(), task=TASK,
                epochs=1, lr=1e-4, batch_size=4, warmup_fraction=0.0, seed=0, device="cpu",
            )


def test_predict_proba_matches_the_model_and_ignores_batching(student, examples):
    model, tokenizer, initial = student
    model.load_state_dict(initial)
    model.train()
    sentences = [e.words for e in examples]
    probabilities = predict_proba(model, tokenizer, sentences, batch_size=3, device="cpu")
    assert model.training  # mode restored
    assert probabilities.shape == (len(sentences), N_LABELS) and probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(predict_proba(model, tokenizer, sentences, batch_size=8, device="cpu"), probabilities, atol=1e-6)
    model.eval()
    with torch.no_grad():
        encoded = tokenizer(" ".join(sentences[0]), return_tensors="pt")
        expected = model(**encoded).logits.softmax(-1)[0].numpy()
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-6)


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("clip", ["per_term", "total", "none"])
def test_step_gradients_split_and_clip_the_cross_entropy_and_the_rest(clip, split):
    # loss = ce + rest on a linear layer: d ce / dw = 3 * a, d rest / dw = 4 * b with a, b unit and orthogonal
    layer = torch.nn.Linear(2, 1, bias=False)
    layer.weight.data.zero_()
    w = layer.weight
    ce = 3.0 * w[0, 0] + 0.0 * w.sum()
    rest = 4.0 * w[0, 1]
    norms = _step_gradients(list(layer.parameters()), ce=ce, loss=ce + rest, clip=clip, max_norm=1.0, split=split)
    measured = split or clip == "per_term"  # per_term clipping needs the split
    np.testing.assert_allclose(norms, (5.0, 3.0, 4.0) if measured else (5.0, math.nan, math.nan), rtol=1e-6)
    expected = {"per_term": [1.0, 1.0], "total": [3.0 / 5, 4.0 / 5], "none": [3.0, 4.0]}[clip]
    np.testing.assert_allclose(w.grad[0].numpy(), expected, rtol=1e-5)


def test_guided_training_logs_both_gradient_norms_and_the_split_only_measures(student, examples):
    _, log = _train(student, _with_prior(examples), Guided(ig_steps=2, beta=5.0), epochs=1)
    assert (log["grad_norm_ce"] > 0).all() and (log["grad_norm_rest"] > 0).all()
    assert log.select(pl.col("grad_norm_ce", "grad_norm_rest").is_finite().all()).row(0) == (True, True)
    # without the split the same steps are taken (same losses, same gradient norms); the two parts are not measured
    _, unsplit = _train(student, _with_prior(examples), Guided(ig_steps=2, beta=5.0), epochs=1, gradient_split=False)
    assert unsplit.select("loss", "ce", "align", "grad_norm").equals(log.select("loss", "ce", "align", "grad_norm"))
    assert unsplit["grad_norm_ce"].is_nan().all() and unsplit["grad_norm_rest"].is_nan().all()


def test_the_training_curve_is_the_logs_loss_ce_and_align_by_step_under_reports_curves(tmp_path):
    """dvc.yaml declares these paths as the train stages' outs and plots them by step (top-level ``plots``)."""
    expected = Path("reports/curves/banking77/k5-seed0/guided.cap+ig-seed1.csv")
    assert training_curve_file(student_dir("banking77", "k5-seed0", "guided.cap+ig", 1)) == expected
    assert training_curve_file(oracle_teacher_dir("banking77", 0)) == Path("reports/curves/banking77/oracle-teacher-seed0.csv")
    log = pl.DataFrame({
        "step": [1, 2], "epoch": [0, 1], "lr": [1e-4, 0.0], "loss": [1.5, 0.75], "ce": [1.25, 0.5], "align": [0.25, 0.25],
        "grad_norm_ce": [2.0, 1.0], "grad_norm_rest": [0.5, 0.5],
    })
    path = tmp_path / "curves" / "run.csv"
    write_training_curve(log, path)
    assert pl.read_csv(path).equals(log.select("step", "loss", "ce", "align"))


def test_an_extra_module_that_no_phase_updates_is_refused(student, examples):
    from dataclasses import dataclass

    from pipeline.training.objectives.base import ExtraModule

    @dataclass(frozen=True)
    class Forgetful(Baseline):
        def modules(self, *, model, task):
            return {"head": ExtraModule(torch.nn.Linear(2, 2))}

    with pytest.raises(ValueError, match="Forgetful: module 'head' is updated by none of its phases"):
        _train(student, examples, Forgetful())


def test_training_says_how_many_steps_are_done(student, examples, monkeypatch, capsys):
    monkeypatch.setattr("pipeline.progress.INTERVAL_S", 0.0)
    _train(student, examples, Baseline(), epochs=2)  # 8 sentences in batches of 4: 2 steps an epoch
    lines = capsys.readouterr().err.splitlines()  # pytest's stderr is no terminal: plain lines
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["1/4", "2/4", "3/4", "4/4", "4/4"]  # + the end
    assert lines[0].startswith("training (2 epochs of 8 sentences): 1/4 steps (25%) in ")
