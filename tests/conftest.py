import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipeline.params import Params, compose_params, parse_params

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
    from pipeline.llm.transformers_backend import TransformersScorer

    return TransformersScorer(model="smollm2-135m-instruct", batch_size=4)


STUDENT = "all-minilm-l6-v2"  # the offline student every test trains (a built-in of pipeline.models)


@pytest.fixture(scope="session")
def make_minilm():
    """The one MiniLM factory: ``make_minilm(num_labels, seed=0)`` -> (model, tokenizer, its initial weights),
    a fresh real all-MiniLM-L6-v2 classifier with a seeded head (train mode, as ``load_student`` leaves it)."""
    from pipeline.models import load_student

    def make(num_labels: int, *, seed: int = 0):
        model, tokenizer = load_student(STUDENT, num_labels=num_labels, seed=seed)
        return model, tokenizer, {k: v.clone() for k, v in model.state_dict().items()}

    return make


@pytest.fixture(scope="module")
def minilm(make_minilm):
    """A real MiniLM classifier over 3 labels (eval mode), fresh for each test module.

    Its head is redrawn with O(1) logits: a fresh head's logit differences are ~0.01, and relative
    checks on them (IG completeness, agreement with captum) would be fragile.
    """
    import torch

    model, tokenizer, _ = make_minilm(3)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    return model.eval(), tokenizer


HWU64_ALARM_AUDIO = ["alarm_query", "alarm_remove", "alarm_set", "audio_volume_down", "audio_volume_mute", "audio_volume_up"]


@pytest.fixture(scope="session")
def hwu64_keywords(shared_data):
    """Six HWU64 classes that share vocabulary: their test rows (id, text, label) and class keywords
    from seeded, positive stand-in CAP scores on their train rows."""
    import numpy as np
    import polars as pl

    from pipeline.evaluation.adversarial import class_keywords

    folder = shared_data / "hwu64"
    train = pl.read_parquet(folder / "train.parquet").filter(pl.col("label").is_in(HWU64_ALARM_AUDIO))
    test = pl.read_parquet(folder / "test.parquet").with_row_index("row")
    test = test.filter(pl.col("label").is_in(HWU64_ALARM_AUDIO)).select(pl.format("test-{}", "row").alias("id"), "text", "label")
    rng = np.random.default_rng(0)
    words = [text.split() for text in train["text"]]
    keywords = class_keywords(labels=train["label"].to_list(), words=words, scores=[rng.uniform(0.1, 1.0, len(w)) for w in words])
    return test, keywords


def edit_params(project: Path, edit: Callable[[dict], None]) -> None:
    """Apply ``edit`` to the parsed params.yaml of ``project`` and write it back."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def profile_params(profile: str) -> Params:
    """The validated parameters of ``profile`` (conf/profile/<profile>.yaml composed over the base)."""
    return parse_params(yaml.safe_load(compose_params([f"profile={profile}"], conf_dir=REPO / "conf")))


def dvc(project: Path, *args: str) -> str:
    """Run ``dvc <args>`` in ``project`` with this interpreter's environment first on PATH (stages call
    ``python``); fail the test with the output's tail unless it exits 0. Returns its stdout."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def make_project(
    folder: Path, *, shared_data: Path, profile: str = "tiny", edit: Callable[[dict], None] | None = None
) -> Path:
    """A fresh git + DVC copy of the project in ``folder`` running a profile.

    Args:
        folder: an empty folder.
        shared_data: the data mirror the copy reads.
        profile: the name of an overlay in conf/profile/ ("default", "tiny", ...), composed into params.yaml.
        edit: applied to the parameters before the copy's params.yaml is written.

    The stages are imported from this checkout (PYTHONPATH), so only the graph and params are copied.
    """
    for name in ("dvc.yaml", "prefect.yaml"):
        shutil.copy(REPO / name, folder)
    shutil.copytree(REPO / "conf", folder / "conf")
    (folder / "params.yaml").write_text(compose_params([f"profile={profile}"], conf_dir=REPO / "conf"), encoding="utf-8")

    def point_at_the_mirror_then_edit(params: dict) -> None:
        params["data"]["mirror"] = str(shared_data)
        if edit is not None:
            edit(params)

    edit_params(folder, point_at_the_mirror_then_edit)
    for package in ("pipeline", "stages"):  # dvc.yaml's deps name these files
        shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=folder, check=True)
    return folder
