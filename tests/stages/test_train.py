import json
from dataclasses import dataclass

import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.artifacts import student_dir, student_metrics_file, training_curve_file
from pipeline.params import load_params
from pipeline.training.objectives import OBJECTIVES, objective_class
from pipeline.training.objectives.base import ExtraModule, Objective, Phase
from pipeline.training.students import fit_student
from pipeline.training.training import MODULES_FILE
from stages import data, evaluate, fewshot, train
from tests.conftest import edit_params


def test_a_training_run_depends_on_its_seed_not_on_the_process(workdir):
    """Each stage runs in a new process whose torch seed is random: the student's fresh head must not depend on it."""
    edit_params(workdir, lambda raw: raw["student"].update(epochs=1))
    data.main("banking77_mini")
    fewshot.main("banking77_mini")
    sentences = pl.read_parquet("data/fewshot/banking77_mini/k5-seed0.parquet")
    labels = sorted(sentences["label"].unique())
    runs = {}
    for global_seed, seed in ((1, 0), (2, 0), (1, 1)):
        torch.manual_seed(global_seed)  # what an unseeded new process would have drawn
        model, _, log, _ = fit_student(load_params(), sentences=sentences, labels=labels, objective="baseline", seed=seed)
        runs[global_seed, seed] = (model.classifier.weight.detach().clone(), log)
    (head, log), (same_head, same_log), (other_head, _) = runs.values()
    assert torch.equal(head, same_head) and log.equals(same_log)
    assert not torch.equal(head, other_head)  # the training seed does change the run


@dataclass(frozen=True)
class Recalibrated(Objective):
    """A toy objective defined only here: a temperature head fitted in its own phase, then cross-entropy.

    Phase "calibrate" updates only the extra module (a learnt log-temperature on the detached
    logits); phase "main" updates only the classifier, from epoch ``start`` on.
    """

    display = "Recalibrated (toy)"
    start: int = 1

    @property
    def phases(self):
        return (Phase("calibrate", updates=("temperature",)), Phase("main", updates=("model",), start_epoch=self.start))

    def modules(self, *, model, task):
        return {"temperature": ExtraModule(nn.Linear(1, 1, bias=False), lr=0.05)}

    def loss(self, *, model, modules, batch, logits, ce, phase, epoch):
        if phase == "calibrate":
            scale = modules["temperature"](torch.ones(1, 1)).exp().squeeze()
            calibrated = F.cross_entropy(logits.detach().float() / scale, batch.labels)
            return calibrated, {"calibrated_ce": calibrated.item()}
        return ce, {}


def test_a_new_objective_trains_and_evaluates_through_the_stages_with_one_registry_line(workdir, monkeypatch):
    """The registry's extension points: an extra module saved with the checkpoint, two ordered phases, a late start."""
    monkeypatch.setitem(OBJECTIVES, "recalibrated", Recalibrated)  # the one line an objective adds
    edit_params(workdir, lambda raw: (
        raw["student"].update(epochs=2, batch_size=8, objectives=["baseline", "recalibrated"]),
        raw["student"]["settings"].update(recalibrated={"start": 1}),
        raw["evaluation"].update(ig_steps=2, fractions=[0.5]),
    ))
    data.main("banking77_mini")
    fewshot.main("banking77_mini")
    train.main("banking77_mini", "k5-seed0", "recalibrated", 0)
    evaluate.main("banking77_mini", "k5-seed0", "recalibrated", 0)

    folder = student_dir("banking77_mini", "k5-seed0", "recalibrated", 0)
    saved = torch.load(folder / MODULES_FILE)
    assert set(saved) == {"temperature"} and saved["temperature"]["weight"].item() != 0.0  # the extra module moved
    log = pl.read_parquet(folder / "train_log.parquet")
    steps_per_epoch = 4  # 25 sentences, batches of 8
    assert len(log) == 2 * steps_per_epoch and log["calibrated_ce"].is_finite().all()
    # epoch 0 runs only the calibration phase: the classifier does not move, so its ce stays on the initial weights'
    first, later = log.filter(log["epoch"] == 0), log.filter(log["epoch"] == 1)
    assert (first["grad_norm_ce"] == 0).all() and (later["grad_norm_ce"] > 0).all()
    assert training_curve_file(folder).is_file()
    metrics = json.loads(student_metrics_file("banking77_mini", "k5-seed0", "recalibrated", 0).read_text())
    assert 0 <= metrics["accuracy"] <= 100


def test_every_sibling_trains_on_the_decoy_benchmark_by_config(workdir):
    """The positive control is config for every objective: eX2L takes the planted decoy's label as its confounder."""
    decoy = "banking77_mini_decoy"
    siblings = ["agm", "regex", "ex2l", "align"]
    edit_params(workdir, lambda raw: (
        raw["data"]["datasets"][decoy]["decoy"].update(rate=0.8),
        raw["student"].update(epochs=1, batch_size=8, objectives=["baseline", *siblings]),
        raw["student"]["settings"].update(agm={}, regex={"attribution": "grad_input"}, ex2l={"confounder": "decoy"},
                                          align={}),
    ))
    data.main(decoy)
    fewshot.main(decoy)
    sentences = pl.read_parquet(f"data/fewshot/{decoy}/k5-seed0.parquet")
    assert (sentences["decoy"] != sentences["label"]).any()  # at rate 0.8 the confounder is not the label
    for objective in siblings:
        train.main(decoy, "k5-seed0", objective, 0)
        folder = student_dir(decoy, "k5-seed0", objective, 0)
        log = pl.read_parquet(folder / "train_log.parquet")
        assert len(log) == 4 and log["loss"].is_finite().all(), objective
        # the curve carries the terms the report's training-fit table shows for the objective
        curve = pl.read_csv(training_curve_file(folder))
        fit_terms = objective_class(objective).fit_terms
        assert set(fit_terms) <= set(curve.columns), objective
        # an objective with a learnt module of its own (ALIGN's masker, eX2L's confounder head) says whether it fit
        assert fit_terms or not (folder / MODULES_FILE).is_file(), objective
    saved = torch.load(student_dir(decoy, "k5-seed0", "ex2l", 0) / MODULES_FILE)
    assert saved["confounder"]["weight"].shape[0] == 5  # one output per label whose decoy can be planted
