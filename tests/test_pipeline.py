"""End to end: `dvc repro` of the tiny profile runs every stage on real models and data, reruns
nothing the second time, and reruns only what a parameter change touches (score-cache counters)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import polars as pl
import pytest

from pipeline.reporting.report import ADVERSARIAL_KEYS, METRIC_KEYS, PRIOR_KEYS
from tests.conftest import dvc, edit_params, make_project

SETTING = "banking77_tiny/k2-seed0"


def stats(project: Path) -> dict:
    return json.loads((project / "data/scores" / f"{SETTING}.stats.json").read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory, shared_data) -> Path:
    project = make_project(tmp_path_factory.mktemp("tiny"), shared_data=shared_data)
    dvc(project, "repro")
    return project


@pytest.mark.slow
def test_every_stage_runs_and_metrics_are_finite(project):
    for name in ("baseline", "guided.cap", "guided.cap+ig+lime", "guided.oracle", "guided.random"):
        metrics = json.loads((project / "metrics" / SETTING / f"{name}-seed0.json").read_text())
        # a student trained with a prior also reports its accurate IG's alignment to that prior
        expected = set(METRIC_KEYS) | (set(PRIOR_KEYS) if name != "baseline" else set())
        attacked = json.loads((project / "metrics" / SETTING / "adversarial" / f"{name}-seed0.json").read_text())
        assert set(metrics) == expected and set(attacked) == set(ADVERSARIAL_KEYS)
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        assert 0 <= metrics["accuracy"] <= 100
    for source in ("cap", "lime", "ig", "oracle", "random", "decoy_truth"):
        priors = pl.read_parquet(project / "data/priors" / SETTING / f"{source}.parquet")
        assert len(priors) == 6  # 3 labels x 2 shots
        assert all(len(w) == len(s) for w, s in zip(priors["words"], priors["scores"]))
    log = pl.read_parquet(project / "models" / SETTING / "guided.cap-seed0" / "train_log.parquet")
    assert log["align"].is_finite().all()
    assert (log["grad_norm"] > 0).all() and log["grad_norm_ce"].is_nan().all()  # student.log_gradient_split is off
    diagnostics = json.loads((project / "metrics" / SETTING / "teacher" / "diagnostics.json").read_text())
    assert diagnostics["chance"] == pytest.approx(100 / 3) and 0 <= diagnostics["zero_shot_accuracy"] <= 100
    assert set(diagnostics["spearman"]) == {"cap~lime", "cap~ig", "cap~oracle", "lime~ig", "lime~oracle", "ig~oracle"}
    report = (project / "reports" / "results.md").read_text()
    assert "CAP Hybrid" in report and "Baseline" in report and "Oracle IG (control)" in report
    assert "## Teacher diagnostics" in report and "MDE Acc" in report
    # every trained student's curve is read into the training-fit table (the teacher's is not a row)
    fit = [line for line in report.partition("## Training fit")[2].splitlines() if line.startswith("| k2 |")]
    students = list((project / "metrics" / SETTING).glob("*-seed0.json"))
    assert len(fit) == len(students) > 0, fit
    assert all(re.search(r"\| 1 \| \d+ \| \d+\.\d\d ± – \| \d+\.\d\d ± – \|  \|$", line) for line in fit), fit  # no fit_terms
    first = stats(project)
    assert first["llm_queries"] + first["cache_hits"] == first["queries"] > 0
    # the tiny profile's adversarial sets come from the LLM generator, its prompts recorded beside them
    generation = json.loads((project / "data/adversarial" / SETTING / "generation.json").read_text())
    assert generation["generator"] == "llm" and generation["llm"].startswith("transformers:smollm2-135m-instruct")
    assert "{keywords}" in generation["add_template"]["user"] and "{source_keywords}" in generation["replace_template"]["user"]
    for attack in ("add", "replace"):
        frame = pl.read_parquet(project / "data/adversarial" / SETTING / f"{attack}.parquet")
        assert len(frame) == 12  # 3 labels x 4 test rows x 1 target class
        assert dict(frame["generator"].value_counts().iter_rows()) == generation["rows"][attack]


@pytest.mark.slow
def test_dvc_plots_show_draws_loss_ce_and_align_by_step_for_every_trained_model(project):
    trained = {path.parent.relative_to(project / "models") for path in (project / "models").rglob("train_log.parquet")}
    plots = json.loads(dvc(project, "plots", "show", "--json"))["data"]
    assert {path for path in plots if path.startswith("reports/curves/")} == {f"reports/curves/{model}.csv" for model in trained}
    (curve,) = plots[f"reports/curves/{SETTING}/guided.cap+ig+lime-seed0.csv"]
    rows = curve["content"]["data"]["values"]
    assert curve["content"]["encoding"]["x"]["field"] == "step" and {row["field"] for row in rows} == {"loss", "ce", "align"}


@pytest.mark.slow
def test_second_repro_does_nothing(project):
    assert "Data and pipelines are up to date." in dvc(project, "repro")


@pytest.mark.slow
def test_beta_change_reruns_training_only_with_zero_llm_queries(project):
    before = stats(project)
    edit_params(project, lambda p: p["student"]["settings"]["guided"].update(beta=0.5))
    output = dvc(project, "repro")
    assert "Running stage 'guided@" in output and "Running stage 'report'" in output
    for untouched in ("score@", "priors@", "train@", "ig_prior@", "oracle_teacher@", "controls@", "diagnostics@",
                      "fuse@", "adversarial@"):
        assert f"Running stage '{untouched}" not in output
    assert stats(project) == before  # the score stage did not run: no LLM query


@pytest.mark.slow
def test_cap_template_change_rescores_only_cap_queries(project):
    edit_params(project, lambda p: p["scoring"]["cap_template"].update(answer_prefix="The intent is:"))
    dvc(project, "repro", "score@banking77_tiny-k2-seed0")
    after = stats(project)
    scores = pl.read_parquet(project / "data/scores" / f"{SETTING}.parquet")
    cap_rows = scores.filter(pl.col("source") == "cap")
    distinct_cap = cap_rows.select("id", "mask").unique().height
    assert after["llm_queries"] == distinct_cap  # every CAP query is new, every LIME query a cache hit
    assert after["cache_hits"] == after["queries"] - distinct_cap
