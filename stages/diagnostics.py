"""Stage 3e: teacher diagnostics of a setting: metrics/<dataset>/<setting>/teacher/diagnostics.json (a DVC metric).

The LLM's zero-shot accuracy with the CAP prompt on the test split, chance beside it, and the mean
per-sentence Spearman correlation between the CAP, LIME, IG and oracle priors of the setting's
train sentences (``pipeline.evaluation.diagnostics``); on a decoy benchmark, each prior's share of mass on the decoy.
"""

from __future__ import annotations

import json

from pipeline.artifacts import (
    DATASET_SCHEMA,
    PRIORS_SCHEMA,
    SCORE_CACHE,
    dataset_split_file,
    diagnostics_file,
    label_names,
    prior_file,
)
from pipeline.data.decoy import decoy_words
from pipeline.evaluation.diagnostics import COMPARED, setting_diagnostics
from pipeline.io import read_parquet, write_json
from pipeline.llm.cache import ScoreCache
from pipeline.llm.factory import scorer_from_params
from pipeline.params import load_params


def main(dataset: str, setting: str) -> None:
    """Write the setting's teacher diagnostics."""
    params = load_params()
    diagnostics = setting_diagnostics(
        test=read_parquet(dataset_split_file(dataset, "test"), schema=DATASET_SCHEMA), labels=label_names(dataset),
        priors={name: read_parquet(prior_file(dataset, setting, name), schema=PRIORS_SCHEMA) for name in COMPARED},
        template=params.scoring.cap_template, scorer=scorer_from_params(params), cache=ScoreCache(SCORE_CACHE),
        decoys=decoy_words(params, dataset),
    )
    write_json(diagnostics, diagnostics_file(dataset, setting))
    print(f"{dataset}/{setting}: {json.dumps(diagnostics)}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
