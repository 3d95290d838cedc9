"""Time shared-prefix scoring against the naive reference and the FLOP floor, on the real CAP workload.

Banking77's CAP prompt (77 labels in the prefix) with SmolLM2-135M-Instruct in float32 on CPU; the
queries are CAP perturbations (16 random masks + the single-word masks) of training sentences.
Machines shared with other jobs slow runs down unevenly, so naive, reuse and the matmul rate are
measured in interleaved rounds and the best round of each is kept.

FLOP floor = matmul rate / (2 x non-embedding parameters x mean suffix+target tokens): the rate at
which the weights alone could process the tokens a query must add (attention over the prefix,
norms and the LM head at target positions are extra work the floor ignores).

Usage: PYTHONPATH=. .venv/bin/python bench/scoring.py [--batch-size 32] [--rounds 3]
"""

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch

from pipeline.perturb import cap_masks, masked_sentence
from pipeline.prompts import CAP_TEMPLATE, build_query, split_prompt
from pipeline.scoring.transformers_backend import TransformersScorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
N_SENTENCES, N_MASKS, N_NAIVE = 16, 16, 6


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def matmul_flops() -> float:
    """FLOP/s of a large float32 matmul (best of 10)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    return 2 * 2048**3 / min(timed(lambda: a @ b)[0] for _ in range(10))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    scorer = TransformersScorer(model="smollm2-135m-instruct", batch_size=args.batch_size)
    labels = (DATA / "labels.txt").read_text().split()
    frame = pl.read_parquet(DATA / "train.parquet").gather_every(10_003 // N_SENTENCES).head(N_SENTENCES)
    prefix, suffix_template = split_prompt(CAP_TEMPLATE, tokenizer=scorer.tokenizer, labels=labels)
    rng = np.random.default_rng(0)
    queries = [
        build_query(suffix_template, sentence=masked_sentence(text.split(), mask), label=label)
        for text, label in frame.select("text", "label").iter_rows()
        for mask in cap_masks(len(text.split()), n=N_MASKS, rng=rng)
    ]
    prefix_ids, encoded = scorer.encode(prefix=prefix, queries=queries)
    tokens = np.mean([len(s) + len(t) for s, t in encoded])
    model = scorer._model
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)

    naive_times, reuse_times, rates = [], [], []
    for _ in range(args.rounds):
        seconds, naive = timed(lambda: scorer.score_naive(prefix=prefix, queries=queries[:N_NAIVE], progress=False))
        naive_times.append(seconds)
        seconds, reused = timed(lambda: scorer.score(prefix=prefix, queries=queries, progress=False))
        reuse_times.append(seconds)
        rates.append(matmul_flops())
    naive_qps, reuse_qps, rate = N_NAIVE / min(naive_times), len(queries) / min(reuse_times), max(rates)
    floor_qps = rate / (2 * non_embedding * tokens)

    print(f"CAP prompt, Banking77: prefix {len(prefix_ids)} tokens; {len(queries)} CAP queries, mean suffix+target "
          f"{tokens:.1f} tokens; SmolLM2-135M float32, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"best of {args.rounds} rounds")
    print(f"naive (full prompt per query): {naive_qps:6.2f} q/s  ({N_NAIVE} queries)")
    print(f"prefix reuse:                  {reuse_qps:6.2f} q/s")
    print(f"FLOP floor:                    {floor_qps:6.2f} q/s  (matmul {rate / 1e9:.0f} GFLOP/s, "
          f"{non_embedding / 1e6:.1f}M non-embedding parameters)")
    print(f"reuse / naive: {reuse_qps / naive_qps:.1f}x   reuse / floor: {reuse_qps / floor_qps:.0%}   "
          f"max |reuse - naive|: {np.abs(reused[:N_NAIVE] - naive).max():.1e}")


if __name__ == "__main__":
    main()
