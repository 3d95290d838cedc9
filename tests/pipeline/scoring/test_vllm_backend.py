import sys

import pytest

from pipeline.errors import ConfigError
from pipeline.scoring import make_scorer


def test_without_vllm_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    with pytest.raises(ConfigError, match=r"pip install 'capflow\[vllm\]'"):
        make_scorer(backend="vllm", model="smollm2-135m-instruct")
