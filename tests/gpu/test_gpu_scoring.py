"""Shared-prefix scoring on CUDA: the transformers backend's prefix reuse against naive scoring, Llama-3-8B shape.

The model is ``bench/gpu_scoring.py``'s Llama-3-8B shape (hidden 4096, 32 heads, 8 KV heads, MLP 14336,
vocab 128256, untied LM head) with 2 of its 32 layers, random weights; the queries are the real
Banking77 CAP workload's stored token ids (402-token prefix). Every path the reuse takes per layer
(prefix KV cache, the shared-prefix SDPA with grouped-query heads, positions after the prefix) runs
in each of the 2 layers, so 2 layers check it; bench/gpu_scoring.py times all 32.
"""

import numpy as np
import pytest
import torch

from bench.gpu_scoring import load_ids, random_model
from pipeline.llm.transformers_backend import TransformersScorer

pytestmark = pytest.mark.cuda
LAYERS = 2
QUERIES = 64
# nats per query (a sum over ~3 target tokens); bf16 rounds hidden states to 8 bits of mantissa
TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 0.15}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_one_batch_with_prefix_reuse_scores_like_naive(dtype):
    prefix_ids, encoded = load_ids(n_queries=QUERIES)
    model = random_model("llama3-8b", device="cuda", dtype=dtype, layers=LAYERS)
    scorer = TransformersScorer.from_loaded(model, None, batch_size=QUERIES, identity="random:llama3-8b")
    reuse = scorer.score_ids(prefix_ids=prefix_ids, queries=encoded, progress=False)  # one batch of all 64
    naive = scorer.score_naive_ids(prefix_ids=prefix_ids, queries=encoded, progress=False)
    assert np.isfinite(reuse).all() and (reuse < 0).all()
    np.testing.assert_allclose(reuse, naive, rtol=0, atol=TOLERANCE[dtype])
    # the comparison can fail: scoring without the prefix (its last token only) moves the scores far more
    alone = scorer.score_ids(prefix_ids=prefix_ids[-1:], queries=encoded, progress=False)
    assert np.abs(alone - naive).max() > 5 * TOLERANCE[dtype]
