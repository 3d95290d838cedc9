"""Stage 7b: pictures: reports/heatmaps/<dataset>/<setting>/index.html and one PNG per sentence.

For a handful of test sentences (the first of each of the first ``evaluation.heatmap_sentences``
labels), every word coloured by each prior (CAP, LIME, IG, CAP Hybrid), computed for these
sentences exactly as the prior stages compute them for training sentences (LLM queries go through
the score cache), and by the trained CAP Hybrid student's own IG toward its prediction, with the
predicted label and its probability (``pipeline.reporting.heatmaps``).
"""

from __future__ import annotations

from pipeline.artifacts import (
    DATASET_SCHEMA,
    SCORE_CACHE,
    dataset_split_file,
    heatmaps_dir,
    heatmaps_page,
    label_names,
    model_name,
    student_dir,
)
from pipeline.io import read_parquet
from pipeline.llm.cache import ScoreCache
from pipeline.llm.factory import scorer_from_params
from pipeline.params import load_params
from pipeline.prior_sources import HYBRID
from pipeline.reporting.heatmaps import heatmap_rows, render_heatmaps, shown_sentences


def main(dataset: str, setting: str) -> None:
    """Write reports/heatmaps/<dataset>/<setting>/index.html and <id>.png files."""
    params = load_params()
    test = read_parquet(dataset_split_file(dataset, "test"), schema=DATASET_SCHEMA)
    labels = label_names(dataset)
    rows = heatmap_rows(
        shown_sentences(test, labels=labels, n=params.evaluation.heatmap_sentences), labels=labels, params=params,
        scorer=scorer_from_params(params), cache=ScoreCache(SCORE_CACHE),
        teacher=student_dir(dataset, setting, "baseline", params.priors.ig.teacher_seed),
        student=student_dir(dataset, setting, model_name(params.student.prior_objectives[0], HYBRID), params.student.seeds[0]),
    )
    render_heatmaps(rows, html_out=heatmaps_page(dataset, setting), png_dir=heatmaps_dir(dataset, setting))
    print(f"wrote {heatmaps_page(dataset, setting)}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
