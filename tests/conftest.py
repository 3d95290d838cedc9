import os
import sys
from pathlib import Path

import pytest

# Tests are offline: hub look-ups fail fast instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real shared datasets (../shared/data beside the checkout, as in CI)."""
    assert (SHARED_DATA / "banking77" / "train.parquet").is_file(), f"shared data missing at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm():
    """The real SmolLM2-135M-Instruct teacher (transformers backend, float32, CPU), loaded once for the suite."""
    from pipeline.scoring.transformers_backend import TransformersScorer

    return TransformersScorer(model="smollm2-135m-instruct", batch_size=4)


def make_project(folder: Path, *, shared_data: Path, profile: str = "tiny") -> Path:
    """A fresh git + DVC copy of the project in ``folder`` running profiles/<profile>.yaml.

    The stages are imported from this checkout (PYTHONPATH), so only the graph and params are copied.
    """
    import shutil
    import subprocess

    import yaml

    for name in ("dvc.yaml", "prefect.yaml"):
        shutil.copy(REPO / name, folder)
    params = yaml.safe_load((REPO / "profiles" / f"{profile}.yaml").read_text(encoding="utf-8"))
    params["data"]["mirror"] = str(shared_data)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for package in ("pipeline", "stages"):  # dvc.yaml's deps name these files
        shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=folder, check=True)
    return folder
