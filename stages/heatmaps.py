"""Stage 7b: pictures: reports/heatmaps/<dataset>/<setting>/index.html and one PNG per sentence.

For a handful of test sentences (the first of each of the first ``evaluation.heatmap_sentences``
labels), every word coloured by each prior (CAP, LIME, IG, CAP Hybrid), computed for these
sentences exactly as the prior stages compute them for training sentences (LLM queries go through
the score cache), and by the trained CAP Hybrid student's own IG toward its prediction, with the
predicted label and its probability.
"""

from __future__ import annotations

import polars as pl

from pipeline.artifacts import DATASET_SCHEMA, DATASETS, REPORTS, SCORE_CACHE, label_names, priors_frame, student_dir
from pipeline.heatmaps import render_heatmaps
from pipeline.io import read_parquet
from pipeline.models import load_trained_student, resolve_device
from pipeline.params import Params, load_params
from pipeline.perturb import perturbations
from pipeline.priors.fusion import DISPLAY_NAMES, fuse_priors
from pipeline.priors.ig import checkpoint_ig
from pipeline.priors.llm import cap_lime_priors
from pipeline.scores import score_perturbations
from pipeline.scoring import scorer_from_params
from pipeline.scoring.cache import ScoreCache
from stages.evaluate import self_rationale

STUDENT = "cap+ig+lime"


def heatmap_rows(params: Params, dataset: str, setting: str) -> list[dict]:
    """The rows render_heatmaps draws: words, labels, and one attribution per source."""
    device = resolve_device(params.device)
    test = read_parquet(DATASETS / dataset / "test.parquet", schema=DATASET_SCHEMA)
    labels = label_names(dataset)
    shown = test.filter(pl.col("label").is_in(labels[: params.evaluation.heatmap_sentences]))
    shown = shown.unique("label", keep="first", maintain_order=True)
    words = [text.split() for text in shown["text"]]

    scorer = scorer_from_params(params)
    scores = score_perturbations(perturbations(shown, params=params.priors), shown, labels=labels,
                                 templates={"cap": params.scoring.cap_template, "lime": params.scoring.lime_template},
                                 scorer=scorer, cache=ScoreCache(SCORE_CACHE))
    priors = cap_lime_priors(shown, scores, params=params.priors)
    teacher = student_dir(dataset, setting, "baseline", params.priors.ig.teacher_seed)
    priors["ig"] = priors_frame(shown["id"].to_list(), words, checkpoint_ig(teacher, shown, params=params))
    fused = fuse_priors(priors, how=params.priors.fusion, normalisation=params.priors.normalisation)

    student, tokenizer = load_trained_student(student_dir(dataset, setting, STUDENT, params.student.seeds[0]), device=device)
    probabilities, own = self_rationale(student, tokenizer, words, params=params.evaluation,
                                        max_length=params.student.max_length, device=device)
    predicted = probabilities.argmax(axis=1)
    return [
        {
            "id": row["id"], "label": row["label"], "words": words[i],
            "predicted": student.config.id2label[int(predicted[i])], "probability": float(probabilities[i, predicted[i]]),
            "attributions": {
                **{DISPLAY_NAMES[name]: fused[name]["scores"][i].to_numpy() for name in ("cap", "lime", "ig", "cap+ig+lime")},
                f"student ({DISPLAY_NAMES[STUDENT]})": own[i],
            },
        }
        for i, row in enumerate(shown.iter_rows(named=True))
    ]


def main(dataset: str, setting: str) -> None:
    """Write reports/heatmaps/<dataset>/<setting>/index.html and <id>.png files."""
    params = load_params()
    folder = REPORTS / "heatmaps" / dataset / setting
    render_heatmaps(heatmap_rows(params, dataset, setting), html_out=folder / "index.html", png_dir=folder)
    print(f"wrote {folder / 'index.html'}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
