"""Stage 3e: teacher diagnostics of a setting: metrics/<dataset>/<setting>/teacher/diagnostics.json (a DVC metric).

The LLM's zero-shot accuracy with the CAP prompt on the test split, chance beside it, and the mean
per-sentence Spearman correlation between the CAP, LIME, IG and oracle priors of the setting's
train sentences (``pipeline.diagnostics``).
"""

from __future__ import annotations

import json

from pipeline.artifacts import DATASET_SCHEMA, DATASETS, PRIORS, PRIORS_SCHEMA, SCORE_CACHE, diagnostics_file, label_names
from pipeline.diagnostics import prior_agreement, zero_shot_accuracy
from pipeline.io import atomic_write, read_parquet
from pipeline.params import load_params
from pipeline.scoring import scorer_from_params
from pipeline.scoring.cache import ScoreCache

COMPARED = ("cap", "lime", "ig", "oracle")


def main(dataset: str, setting: str) -> None:
    """Write the setting's teacher diagnostics."""
    params = load_params()
    test = read_parquet(DATASETS / dataset / "test.parquet", schema=DATASET_SCHEMA)
    teacher = zero_shot_accuracy(sentences=test, labels=label_names(dataset), template=params.scoring.cap_template,
                                 scorer=scorer_from_params(params), cache=ScoreCache(SCORE_CACHE))
    priors = {name: read_parquet(PRIORS / dataset / setting / f"{name}.parquet", schema=PRIORS_SCHEMA) for name in COMPARED}
    diagnostics = teacher | {"spearman": prior_agreement(priors)}
    with atomic_write(diagnostics_file(dataset, setting)) as tmp:
        tmp.write_text(json.dumps(diagnostics, indent=2) + "\n")
    print(f"{dataset}/{setting}: {json.dumps(diagnostics)}")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
