"""Where every artifact lives and what its columns are: the one place stages, tests and flows agree on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import read_parquet

DATASETS = Path("data/datasets")  # <dataset>/{train,validation,test}.parquet
FEWSHOT = Path("data/fewshot")  # <dataset>/<setting>.parquet
SCORES = Path("data/scores")  # <dataset>/<setting>.parquet (+ .stats.json)
SCORE_CACHE = Path("data/cache/scores")  # content-addressed LLM scores, kept across reruns
GENERATION_CACHE = Path("data/cache/generations")  # content-addressed LLM generations, kept across reruns
PRIORS = Path("data/priors")  # <dataset>/<setting>/{cap,lime,ig}.parquet
FUSED = Path("data/fused")  # <dataset>/<setting>/<combination>.parquet
ADVERSARIAL = Path("data/adversarial")  # <dataset>/<setting>/{add,replace}.parquet
MODELS = Path("models")  # <dataset>/<setting>/<model name>-seed<S>/, <dataset>/oracle-teacher-seed<S>/
METRICS = Path("metrics")  # <dataset>/<setting>/<model name>-seed<S>.json, adversarial.json, teacher/diagnostics.json
REPORTS = Path("reports")
CURVES = REPORTS / "curves"  # <model folder below models/>.csv: training curves (DVC plots)

DATASET_SCHEMA = {"id": pl.String, "text": pl.String, "label": pl.String}
SCORES_SCHEMA = {"id": pl.String, "source": pl.String, "mask": pl.List(pl.Boolean), "logprob": pl.Float64}
PRIORS_SCHEMA = {"id": pl.String, "words": pl.List(pl.String), "scores": pl.List(pl.Float64)}
ADVERSARIAL_SCHEMA = {name: pl.String for name in ("id", "text", "label", "source_id", "target_class")}


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


def adversarial_metrics_file(dataset: str, setting: str) -> Path:
    """The adversarial accuracies of every student of a setting, keyed by ``<model name>-seed<S>``."""
    return METRICS / dataset / setting / "adversarial.json"


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
    return sorted(read_parquet(DATASETS / dataset / "train.parquet", schema=DATASET_SCHEMA)["label"].unique())
