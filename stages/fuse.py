"""Stage 4: the prior combinations (the seven of the CAP family, and each control alone).

Writes data/fused/<dataset>/<setting>/<combination>.parquet."""

from __future__ import annotations

from pipeline.artifacts import PRIORS_SCHEMA, fused_file, prior_file
from pipeline.io import read_parquet, write_parquet
from pipeline.params import load_params
from pipeline.priors.fusion import SOURCES, fuse_priors


def main(dataset: str, setting: str) -> None:
    """Write every combination of the setting's prior sources."""
    params = load_params()
    priors = {s: read_parquet(prior_file(dataset, setting, s), schema=PRIORS_SCHEMA) for s in SOURCES}
    fused = fuse_priors(priors, how=params.priors.fusion, normalisation=params.priors.normalisation)
    for name, frame in fused.items():
        write_parquet(frame, fused_file(dataset, setting, name))
    print(f"{dataset}/{setting}: {len(fused)} combinations of {len(priors['cap'])} sentences")


if __name__ == "__main__":
    from pipeline.cli import stage_app

    stage_app(main)()
