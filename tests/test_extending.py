"""docs/extending.md's recipes done with a toy, as written there: the objective module and its registry
line, the profile overlay and a dataset folder, composed into params.yaml and run through `dvc repro`.

The code and the overlay are read out of the document's fenced blocks, so the test fails when the
document stops being true."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO, dvc, make_project

DOC = REPO / "docs" / "extending.md"
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card"]
# what the module needs besides the class the document shows
MODULE_HEADER = '''"""The confidence penalty (docs/extending.md's toy objective)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.training.objectives.base import Objective


'''


def fenced(language: str, containing: str) -> str:
    """The first ```language block of docs/extending.md that contains ``containing``, dedented."""
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    text = next(body for indent, body in blocks if containing in body)
    indent = len(re.match(r" *", text).group())
    return "".join(line[indent:] for line in text.splitlines(keepends=True))


@pytest.fixture(scope="module")
def project(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("extending")
    folder = root / "mirror" / "toy_intents"
    folder.mkdir(parents=True)
    for split, per_label in (("train", 6), ("test", 4)):
        rows = pl.read_parquet(shared_data / "banking77" / f"{split}.parquet")
        pl.concat([rows.filter(pl.col("label") == label).head(per_label) for label in LABELS]).select(
            "text", "label"
        ).write_parquet(folder / f"{split}.parquet")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")

    project = root / "project"
    project.mkdir()
    make_project(project, shared_data=shared_data)
    objectives = project / "pipeline" / "training" / "objectives"
    (objectives / "confidence_penalty.py").write_text(MODULE_HEADER + fenced("python", "class ConfidencePenalty"))
    registry = objectives / "__init__.py"
    line = fenced("python", ": ConfidencePenalty,")
    text = registry.read_text(encoding="utf-8").replace("\n}\n", f"\n    {line.strip()}\n}}\n", 1).replace(
        "from pipeline.training.objectives.base import Objective\n",
        "from pipeline.training.objectives.base import Objective\n"
        "from pipeline.training.objectives.confidence_penalty import ConfidencePenalty\n",
    )
    registry.write_text(text, encoding="utf-8")
    (project / "conf" / "profile" / "toy.yaml").write_text(fenced("yaml", "profile: toy"), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pipeline.params", "profile=toy", f"data.mirror={root / 'mirror'}"],
        cwd=project, check=True, capture_output=True,
    )
    dvc(project, "repro")
    return project


@pytest.mark.slow
def test_the_toy_objective_trains_on_the_toy_dataset_and_is_reported(project):
    setting = project / "metrics" / "toy_intents" / "k2-seed0"
    for name in ("baseline", "confidence_penalty"):
        metrics = json.loads((setting / f"{name}-seed0.json").read_text())
        assert all(math.isfinite(value) for value in metrics.values()), metrics
    # the penalty acts: loss = CE - beta * H with H > 0, and its term is logged
    log = pl.read_parquet(project / "models" / "toy_intents" / "k2-seed0" / "confidence_penalty-seed0" / "train_log.parquet")
    assert (log["entropy"] > 0).all() and (log["loss"] < log["ce"]).all()
    report = (project / "reports" / "results.md").read_text()
    assert re.search(r"^\| Confidence penalty \| [0-9.]+ ", report, re.MULTILINE), report
    assert "Data and pipelines are up to date." in dvc(project, "status")
    # the overlay replaced the base's datasets with the toy folder
    assert "toy_intents" in (project / "params.yaml").read_text() and not (project / "data/datasets/banking77_mini").exists()

