"""Stage 3a: CAP and LIME priors from the scored perturbations: data/priors/<dataset>/<setting>/{cap,lime}.parquet."""

from __future__ import annotations

from pipeline.artifacts import DATASET_SCHEMA, SCORES_SCHEMA, fewshot_file, prior_file, scores_file
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.llm import cap_lime_priors


def main(dataset: str, setting: str) -> None:
    """Write data/priors/<dataset>/<setting>/cap.parquet and lime.parquet."""
    params = load_params()
    sentences = read_parquet(fewshot_file(dataset, setting), schema=DATASET_SCHEMA)
    scores = read_parquet(scores_file(dataset, setting), schema=SCORES_SCHEMA)
    for source, frame in cap_lime_priors(sentences, scores, params=params.priors).items():
        write_parquet(frame, prior_file(dataset, setting, source))
        print(f"{dataset}/{setting}/{source}: {len(frame)} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
