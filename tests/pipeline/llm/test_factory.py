import pytest

from pipeline.errors import ConfigError, ModelError
from pipeline.llm.factory import make_scorer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "llamacpp"}, "unknown backend 'llamacpp'"),
        ({"backend": "openai"}, "backend=openai needs the server URL"),
        ({"backend": "transformers", "dtype": "int8"}, "'int8' is not one of"),
        ({"backend": "transformers", "batch_size": 0}, "batch_size: must be >= 1"),
        ({"backend": "openai", "base_url": "http://127.0.0.1:9", "vllm_mode": "fast"},
         "scoring.vllm_mode: 'fast' is not one of next_token, prompt_logprobs"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_scorer(**{"model": "smollm2-135m-instruct", **kwargs})


@pytest.mark.parametrize("backend", ["transformers", "openai"])
def test_missing_model_names_it(backend):
    with pytest.raises(ModelError, match="model 'no-such-org/no-such-model' not found locally"):
        make_scorer(backend=backend, model="no-such-org/no-such-model", base_url="http://127.0.0.1:9")
