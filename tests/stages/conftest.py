import pytest
import yaml

from tests.conftest import REPO


@pytest.fixture
def workdir(tmp_path, monkeypatch, shared_data):
    """A scratch project directory holding the default params.yaml with the mirror made absolute."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["mirror"] = str(shared_data)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAPFLOW_DATA_MIRROR", raising=False)
    return tmp_path
