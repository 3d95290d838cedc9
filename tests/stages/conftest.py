import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path, monkeypatch, shared_data):
    """A scratch project directory holding the default params.yaml with the mirror made absolute."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["mirror"] = str(shared_data)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAPFLOW_DATA_MIRROR", raising=False)
    return tmp_path


def edit_params(workdir: Path, edit) -> None:
    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    edit(raw)
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
