"""The declared prior sources and dvc.yaml agree: each producer stage writes exactly its sources' files."""

import yaml

from pipeline.artifacts import prior_file
from pipeline.prior_sources import SOURCES
from tests.conftest import REPO

ITEM = ("${item.dataset}", "${item.setting}")  # how dvc.yaml's matrix stages name a setting's folders


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _paths(entries: list) -> set[str]:
    """dvc.yaml's outs or deps as paths (an entry with options is a one-key mapping)."""
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}


def test_each_producer_stage_writes_exactly_its_declared_sources():
    stages = _stages()
    for producer in {source.producer for source in SOURCES}:
        written = {path for path in _paths(stages[producer]["outs"]) if path.startswith("data/priors/")}
        declared = {prior_file(*ITEM, source.name).as_posix() for source in SOURCES if source.producer == producer}
        assert written == declared, f"dvc.yaml stage {producer!r} writes {sorted(written)}, declared {sorted(declared)}"
    others = {name for name, stage in stages.items() if name not in {source.producer for source in SOURCES}
              and any(path.startswith("data/priors/") for path in _paths(stage.get("do", stage).get("outs", [])))}
    assert not others, f"dvc.yaml stages {sorted(others)} write priors but produce no declared source"


def test_the_fuse_stage_reads_every_declared_source():
    deps = _paths(_stages()["fuse"]["deps"])
    assert {prior_file(*ITEM, source.name).as_posix() for source in SOURCES} <= deps


def test_names_and_display_names_are_unique():
    assert len({source.name for source in SOURCES}) == len({source.display for source in SOURCES}) == len(SOURCES)
