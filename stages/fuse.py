"""Stage 4: the prior combinations (the seven of the CAP family, and each control alone).

Writes data/fused/<dataset>/<setting>/<combination>.parquet."""

from __future__ import annotations

import polars as pl

from pipeline.artifacts import FUSED, PRIORS, PRIORS_SCHEMA, priors_frame
from pipeline.errors import ArtifactError
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.fusion import COMBINATIONS, SOURCES, fuse


def fuse_priors(priors: dict[str, pl.DataFrame], *, how: str, normalisation: str) -> dict[str, pl.DataFrame]:
    """Normalise each source per sentence and combine word-wise, for every combination of the given sources.

    Args:
        priors: source (a subset of ``SOURCES``) -> priors-contract frame over the same sentences.

    Returns:
        combination name -> priors-contract frame, for each combination whose sources are all
        given (single sources come out normalised).
    """
    reference = next(iter(priors.values()))
    for source, frame in priors.items():
        if frame["id"].to_list() != reference["id"].to_list():
            raise ArtifactError(f"{source} priors cover other sentences than {next(iter(priors))} priors; rerun the prior stages")
    vectors = {source: [s.to_numpy() for s in frame["scores"]] for source, frame in priors.items()}
    return {
        name: priors_frame(reference["id"], reference["words"].to_list(),
                           fuse([vectors[s] for s in sources], how=how, normalisation=normalisation))
        for name, sources in COMBINATIONS.items() if set(sources) <= priors.keys()
    }


def main(dataset: str, setting: str) -> None:
    """Write every combination of the setting's prior sources."""
    params = load_params()
    priors = {s: read_parquet(PRIORS / dataset / setting / f"{s}.parquet", schema=PRIORS_SCHEMA) for s in SOURCES}
    fused = fuse_priors(priors, how=params.priors.fusion, normalisation=params.priors.normalisation)
    for name, frame in fused.items():
        write_parquet(frame, FUSED / dataset / setting / f"{name}.parquet")
    print(f"{dataset}/{setting}: {len(fused)} combinations of {len(priors['cap'])} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
