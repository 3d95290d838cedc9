"""Where every artifact lives and what its columns are: the one place stages, tests and flows agree on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import read_parquet

DATASETS = Path("data/datasets")  # <dataset>/{train,validation,test}.parquet (+ test_<variant>.parquet: decoys)
FEWSHOT = Path("data/fewshot")  # <dataset>/<setting>.parquet
SCORES = Path("data/scores")  # <dataset>/<setting>.parquet (+ .stats.json)
SCORE_CACHE = Path("data/cache/scores")  # content-addressed LLM scores, kept across reruns
GENERATION_CACHE = Path("data/cache/generations")  # content-addressed LLM generations, kept across reruns
PRIORS = Path("data/priors")  # <dataset>/<setting>/{cap,lime,ig}.parquet
FUSED = Path("data/fused")  # <dataset>/<setting>/<combination>.parquet
ADVERSARIAL = Path("data/adversarial")  # <dataset>/<setting>/{add,replace}.parquet
MODELS = Path("models")  # <dataset>/<setting>/<model name>-seed<S>/, <dataset>/oracle-teacher-seed<S>/
METRICS = Path("metrics")  # <dataset>/<setting>/<model name>-seed<S>.json, adversarial/<same>.json, teacher/diagnostics.json
REPORTS = Path("reports")
CURVES = REPORTS / "curves"  # <model folder below models/>.csv: training curves (DVC plots)
ADVERSARIAL_METRICS = "adversarial"  # folder beside a setting's students' metrics: the attack stages'
HEATMAPS = REPORTS / "heatmaps"  # <dataset>/<setting>/{index.html,<id>.png}

DATASET_SCHEMA = {"id": pl.String, "text": pl.String, "label": pl.String}
SCORES_SCHEMA = {"id": pl.String, "source": pl.String, "mask": pl.List(pl.Boolean), "logprob": pl.Float64}
PRIORS_SCHEMA = {"id": pl.String, "words": pl.List(pl.String), "scores": pl.List(pl.Float64)}
ADVERSARIAL_SCHEMA = {name: pl.String for name in ("id", "text", "label", "source_id", "target_class")}
ATTACKS = ("add", "replace")  # the adversarial test sets of a setting: keyword addition, keyword replacement


def priors_frame(ids: Sequence[str], words: Sequence[Sequence[str]], scores: Sequence[np.ndarray]) -> pl.DataFrame:
    """The priors contract: id, words (whitespace words of text), scores (float64, one per word)."""
    for i, (w, s) in enumerate(zip(words, scores, strict=True)):
        if len(w) != len(s):
            raise ValueError(f"sentence {ids[i]!r}: {len(w)} words but {len(s)} scores")
    return pl.DataFrame(
        {
            "id": list(ids),
            "words": [list(w) for w in words],
            "scores": [np.asarray(s, dtype=np.float64).tolist() for s in scores],
        },
        schema=PRIORS_SCHEMA,
    )


def model_name(objective: str, prior: str | None = None) -> str:
    """A student's name: its objective, or ``<objective>.<prior>`` for one trained with a prior."""
    return objective if prior is None else f"{objective}.{prior}"


def parse_model_name(name: str) -> tuple[str, str | None]:
    """The (objective, prior or None) of a ``model_name``."""
    objective, _, prior = name.partition(".")
    return objective, prior or None


def student_dir(dataset: str, setting: str, name: str, seed: int) -> Path:
    """The checkpoint folder of the student ``name`` (a ``model_name``) trained with ``seed``."""
    return MODELS / dataset / setting / f"{name}-seed{seed}"


def students_of(dataset: str, setting: str) -> list[Path]:
    """The checkpoint folders of every student trained on a setting, sorted by name."""
    return sorted(p for p in (MODELS / dataset / setting).glob("*-seed*") if p.is_dir() and not p.name.startswith("."))


def student_metrics_file(dataset: str, setting: str, name: str, seed: int) -> Path:
    """The evaluation metrics (a DVC metric) of ``student_dir(dataset, setting, name, seed)``."""
    return METRICS / dataset / setting / f"{name}-seed{seed}.json"


def adversarial_metrics_of(metrics_file: Path) -> Path:
    """The adversarial accuracies of the student whose evaluation metrics are ``metrics_file``, beside it."""
    return metrics_file.parent / ADVERSARIAL_METRICS / metrics_file.name


def adversarial_metrics_file(dataset: str, setting: str, name: str, seed: int) -> Path:
    """The adversarial accuracies (a DVC metric) of ``student_dir(dataset, setting, name, seed)``."""
    return adversarial_metrics_of(student_metrics_file(dataset, setting, name, seed))


def dataset_split_file(dataset: str, split: str) -> Path:
    """One split (train, validation or test) of a prepared dataset."""
    return DATASETS / dataset / f"{split}.parquet"


def decoy_test_split(variant: str) -> str:
    """The split name of a decoy benchmark's test copy (``pipeline.data.decoy.TEST_VARIANTS``): test_matched, ..."""
    return f"test_{variant}"


def decoy_test_file(dataset: str, variant: str) -> Path:
    """A decoy benchmark's test copy with the decoy ``variant`` planted, beside the clean test split."""
    return dataset_split_file(dataset, decoy_test_split(variant))


def fewshot_file(dataset: str, setting: str) -> Path:
    """The training sentences of a setting (k<K>-seed<S> or full)."""
    return FEWSHOT / dataset / f"{setting}.parquet"


def scores_file(dataset: str, setting: str) -> Path:
    """The teacher LLM's scores of every CAP and LIME perturbation of a setting."""
    return SCORES / dataset / f"{setting}.parquet"


def scores_stats_file(dataset: str, setting: str) -> Path:
    """The score stage's counters of a setting (a DVC metric): queries, cache hits, LLM queries, time."""
    return SCORES / dataset / f"{setting}.stats.json"


def prior_file(dataset: str, setting: str, source: str) -> Path:
    """One prior source's scores of a setting's training sentences (``pipeline.prior_sources``)."""
    return PRIORS / dataset / setting / f"{source}.parquet"


def fused_file(dataset: str, setting: str, combination: str) -> Path:
    """One prior combination of a setting (``pipeline.prior_sources.COMBINATIONS``)."""
    return FUSED / dataset / setting / f"{combination}.parquet"


def adversarial_dir(dataset: str, setting: str) -> Path:
    """The adversarial test sets of a setting and their generation record (the adversarial stage's out)."""
    return ADVERSARIAL / dataset / setting


def adversarial_file(dataset: str, setting: str, attack: str) -> Path:
    """One attacked test set (add or replace) of a setting."""
    return adversarial_dir(dataset, setting) / f"{attack}.parquet"


def generation_file(dataset: str, setting: str) -> Path:
    """How a setting's adversarial sets were generated: generator, LLM, prompts, rows per generator."""
    return adversarial_dir(dataset, setting) / "generation.json"


def heatmaps_dir(dataset: str, setting: str) -> Path:
    """The heatmap pictures of a setting: one PNG per sentence, beside ``heatmaps_page``."""
    return HEATMAPS / dataset / setting


def heatmaps_page(dataset: str, setting: str) -> Path:
    """The HTML page that shows every heatmap sentence of a setting."""
    return heatmaps_dir(dataset, setting) / "index.html"


def oracle_teacher_dir(dataset: str, seed: int) -> Path:
    """The checkpoint of the cross-entropy student trained on the full training pool (the oracle prior's teacher)."""
    return MODELS / dataset / f"oracle-teacher-seed{seed}"


def training_curve_file(model_dir: Path) -> Path:
    """The training curve (a DVC plot) of the model saved in ``model_dir``: its path below models/, under reports/curves/."""
    return CURVES / f"{Path(model_dir).relative_to(MODELS)}.csv"


def diagnostics_file(dataset: str, setting: str) -> Path:
    """The teacher diagnostics of a setting (a DVC metric; a folder below the students' metrics, which the report globs)."""
    return METRICS / dataset / setting / "teacher" / "diagnostics.json"


def label_names(dataset: str) -> list[str]:
    """The dataset's label set, sorted: the label space of its prompts, and class index i of every student."""
    return sorted(read_parquet(dataset_split_file(dataset, "train"), schema=DATASET_SCHEMA)["label"].unique())
