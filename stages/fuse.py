"""Stage 4: the seven prior combinations: data/fused/<dataset>/<setting>/<combination>.parquet."""

from __future__ import annotations

import polars as pl

from pipeline.artifacts import FUSED, PRIORS, PRIORS_SCHEMA, priors_frame
from pipeline.errors import ArtifactError
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.fusion import COMBINATIONS, SOURCES, fuse


def fuse_priors(priors: dict[str, pl.DataFrame], *, how: str, normalisation: str) -> dict[str, pl.DataFrame]:
    """Normalise each source per sentence and combine word-wise, for every combination.

    Args:
        priors: source ("ig", "lime", "cap") -> priors-contract frame over the same sentences.

    Returns:
        combination name -> priors-contract frame (single sources come out normalised).
    """
    reference = priors[SOURCES[0]]
    for source, frame in priors.items():
        if frame["id"].to_list() != reference["id"].to_list():
            raise ArtifactError(f"{source} priors cover other sentences than {SOURCES[0]} priors; rerun the prior stages")
    vectors = {source: [s.to_numpy() for s in frame["scores"]] for source, frame in priors.items()}
    return {
        name: priors_frame(reference["id"], reference["words"].to_list(),
                           fuse([vectors[s] for s in sources], how=how, normalisation=normalisation))
        for name, sources in COMBINATIONS.items()
    }


def main(dataset: str, setting: str) -> None:
    """Write the seven combinations of the setting's CAP, LIME and IG priors."""
    params = load_params()
    priors = {s: read_parquet(PRIORS / dataset / setting / f"{s}.parquet", schema=PRIORS_SCHEMA) for s in SOURCES}
    for name, frame in fuse_priors(priors, how=params.priors.fusion, normalisation=params.priors.normalisation).items():
        write_parquet(frame, FUSED / dataset / setting / f"{name}.parquet")
    print(f"{dataset}/{setting}: {len(COMBINATIONS)} combinations of {len(priors['cap'])} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
