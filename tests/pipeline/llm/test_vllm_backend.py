import sys
from types import SimpleNamespace

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.llm.factory import make_scorer, scorer_from_params
from pipeline.llm.vllm_backend import engine_kwargs
from pipeline.models import resolve_model
from pipeline.params import VllmParams, parse_params
from tests.conftest import REPO


def test_without_vllm_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    with pytest.raises(ConfigError, match=r"pip install 'capflow\[vllm\]'"):
        make_scorer(backend="vllm", model="smollm2-135m-instruct")


class _FakeLlm:
    """Stands in for ``vllm.LLM``: records its keyword arguments and answers the context length like an engine."""

    built: list[dict] = []

    def __init__(self, **kwargs):
        self.built.append(kwargs)
        context = kwargs["max_model_len"] or 8192
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=context))


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` module whose engine only records how it was built; yields that record (one dict per engine)."""
    _FakeLlm.built = []
    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=_FakeLlm, SamplingParams=None))
    return _FakeLlm.built


def test_the_engine_defaults_are_vllms():
    # vLLM's EngineArgs defaults: 90 % of the GPU, one GPU, the model's context and dtype, prefix caching on
    assert engine_kwargs(model_path="/m", engine=VllmParams()) == {
        "model": "/m", "tokenizer": "/m", "seed": 0, "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1,
        "max_model_len": None, "dtype": "auto", "enable_prefix_caching": True,
    }


def test_scoring_vllm_reaches_the_engine(fake_vllm):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["scoring"] |= {"backend": "vllm", "vllm": {"gpu_memory_utilization": 0.45, "tensor_parallel_size": 2,
                                                    "max_model_len": 4096, "dtype": "bfloat16",
                                                    "enable_prefix_caching": False}}
    scorer = scorer_from_params(parse_params(raw))
    (kwargs,) = fake_vllm
    assert kwargs == {"model": resolve_model("smollm2-135m-instruct"), "tokenizer": resolve_model("smollm2-135m-instruct"),
                      "seed": 0, "gpu_memory_utilization": 0.45, "tensor_parallel_size": 2, "max_model_len": 4096,
                      "dtype": "bfloat16", "enable_prefix_caching": False}
    assert scorer.max_length == 4096 and scorer.identity.endswith(":bfloat16")


def test_an_explicit_dtype_overrides_the_engine_settings(fake_vllm):
    make_scorer(backend="vllm", model="smollm2-135m-instruct", dtype="float32", vllm=VllmParams(dtype="bfloat16",
                                                                                                max_model_len=512))
    assert fake_vllm[0]["dtype"] == "float32" and fake_vllm[0]["max_model_len"] == 512


@pytest.mark.parametrize(("key", "value", "error"), [
    ("gpu_memory_utilization", 0, "greater than 0"),
    ("gpu_memory_utilization", 1.5, "less than or equal to 1"),
    ("tensor_parallel_size", 0, "greater than or equal to 1"),
    ("max_model_len", 0, "greater than 0"),
    ("dtype", "fp8", "'auto', 'float32', 'bfloat16' or 'float16'"),
    ("swap_space", 4, "unknown key 'scoring.vllm.swap_space'"),
])
def test_engine_settings_are_validated(key, value, error):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["scoring"]["vllm"] = {key: value}
    with pytest.raises(ConfigError, match=error):
        parse_params(raw)
