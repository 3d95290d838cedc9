"""Shared-prefix scoring on any CUDA machine without weights: a random-initialised model of a named shape.

The transformers backend's prefix reuse (``TransformersScorer``) against batched full prompts and
one-prompt-at-a-time (naive) scoring, on the real Banking77 CAP workload's token ids (tokenised by
``--tokenizer``: the built-in SmolLM2 tokenizer by default, ``meta-llama/Meta-Llama-3-8B-Instruct``
where it is downloaded), with q/s, % of the FLOP floor and the ratios, measured in one run.
Random weights change no cost: the same matmuls and attention run whatever the values.

FLOP floor = matmul rate (an 8192^2 matmul on CUDA, 2048^2 on CPU, in the model's dtype) / (2 x
non-embedding parameters x mean suffix+target tokens), as in bench/scoring.py.

Shapes: llama3-8b (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocab 128256) and
smollm2-135m (hidden 576, 30 layers, 9 heads, 3 KV heads, MLP 1536, vocab 49152).

Usage (GPU): PYTHONPATH=. .venv/bin/python bench/gpu_scoring.py --shape llama3-8b
       (CPU check): PYTHONPATH=. .venv/bin/python bench/gpu_scoring.py --shape smollm2-135m --device cpu \\
                        --queries 16 --batch-sizes 8 --full-batch-size 4 --naive-queries 2 --rounds 1 [--layers 2]
"""

import argparse
import math

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bench.scoring import matmul_flops, timed, workload
from pipeline.models import load_tokenizer
from pipeline.scoring.transformers_backend import TransformersScorer

SHAPES = {
    "llama3-8b": LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                             intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192,
                             rope_theta=500_000.0, tie_word_embeddings=False),
    "smollm2-135m": LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192,
                                rope_theta=100_000.0, tie_word_embeddings=True),
}


def random_model(shape: str, *, device: str, dtype: torch.dtype, layers: int | None = None) -> LlamaForCausalLM:
    """A Llama-architecture causal LM of ``shape`` (``layers`` of them if given), randomly initialised on ``device``."""
    config = SHAPES[shape]
    config.pad_token_id = 0
    config.num_hidden_layers = layers or config.num_hidden_layers
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM._from_config(config, dtype=dtype).eval()


@torch.inference_mode()
def score_full_batched(scorer: TransformersScorer, *, prefix: str, queries: list, batch_size: int) -> np.ndarray:
    """Target log-probs with whole prompts (prefix + suffix + target) batched by length, no prefix reuse.

    Right padding with an attention mask; only the positions that predict target tokens go through the LM head.
    """
    model = scorer._model
    prefix_ids, encoded = scorer.encode(prefix=prefix, queries=queries)
    prompts = [prefix_ids + suffix + target for suffix, target in encoded]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    scores = np.empty(len(prompts))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        length = max(len(prompts[i]) for i in batch)
        ids = torch.zeros(len(batch), length, dtype=torch.long)
        mask = torch.zeros(len(batch), length, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(prompts[i])], mask[row, : len(prompts[i])] = torch.tensor(prompts[i]), 1
        hidden = model.get_decoder()(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).last_hidden_state
        targets = [encoded[i][1] for i in batch]
        rows = np.repeat(np.arange(len(batch)), [len(t) for t in targets])
        cols = np.concatenate([np.arange(len(prompts[i]) - len(t) - 1, len(prompts[i]) - 1) for i, t in zip(batch, targets)])
        logprobs = model.get_output_embeddings()(hidden[rows, cols]).float().log_softmax(dim=-1)
        picked = logprobs.gather(1, torch.tensor(np.concatenate(targets), device=model.device)[:, None]).squeeze(1)
        scores[batch] = np.bincount(rows, weights=picked.double().cpu().numpy(), minlength=len(batch))
    return scores


def best_qps(fn, *, n: int, rounds: int) -> tuple[float, np.ndarray]:
    """Queries per second of ``fn()`` over ``n`` queries (best of ``rounds`` after one warm-up call), and its result."""
    fn()
    times, result = [], None
    for _ in range(rounds):
        seconds, result = timed(fn)
        times.append(seconds)
    return n / min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--tokenizer", default="smollm2-135m-instruct", help="model whose tokenizer makes the token ids")
    parser.add_argument("--queries", type=int, default=4096, help="CAP queries scored by reuse and full prompts")
    parser.add_argument("--batch-sizes", default="64,1024", help="comma-separated prefix-reuse batch sizes")
    parser.add_argument("--full-batch-size", type=int, default=64, help="batch size of the full-prompt baseline")
    parser.add_argument("--naive-queries", type=int, default=32, help="queries scored one at a time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, help="fewer layers than the shape's (a quick check, not a measurement)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))

    tokenizer = load_tokenizer(args.tokenizer)
    model = random_model(args.shape, device=args.device, dtype=dtype, layers=args.layers)
    prefix, queries = workload(tokenizer, n_sentences=min(10_003, math.ceil(args.queries / 20)))
    queries = queries[: args.queries]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    scorer = TransformersScorer.from_loaded(model, tokenizer, batch_size=batch_sizes[0], identity=f"random:{args.shape}")
    prefix_ids, encoded = scorer.encode(prefix=prefix, queries=queries)
    tokens = np.mean([len(s) + len(t) for s, t in encoded])
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    rate = matmul_flops(device=args.device, dtype=dtype, n=8192 if args.device.startswith("cuda") else 2048)
    floor_qps = rate / (2 * non_embedding * tokens)
    on_cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(args.device) if on_cuda else f"CPU, {torch.get_num_threads()} threads"

    print(f"{args.shape}, {model.config.num_hidden_layers} layers (random weights, "
          f"{non_embedding / 1e9:.2f}B non-embedding parameters), {str(dtype)[6:]} on "
          f"{device_name}; Banking77 CAP workload ({args.tokenizer} token ids): prefix {len(prefix_ids)} tokens, "
          f"{len(queries)} queries, mean suffix+target {tokens:.1f} tokens; best of {args.rounds} rounds")
    print(f"matmul {rate / 1e12:.1f} TFLOP/s: FLOP floor {floor_qps:.1f} q/s")
    naive_queries = queries[: args.naive_queries]
    naive_qps, naive = best_qps(lambda: scorer.score_naive(prefix=prefix, queries=naive_queries, progress=False),
                                n=len(naive_queries), rounds=args.rounds)
    full_qps, full = best_qps(
        lambda: score_full_batched(scorer, prefix=prefix, queries=queries, batch_size=args.full_batch_size),
        n=len(queries), rounds=args.rounds,
    )
    rows = [(f"naive (one prompt at a time, {len(naive_queries)} queries)", naive_qps),
            (f"full prompts, batch {args.full_batch_size}", full_qps)]
    reuse = None
    for batch_size in batch_sizes:
        scorer.batch_size = batch_size
        qps, reuse = best_qps(lambda: scorer.score(prefix=prefix, queries=queries, progress=False),
                              n=len(queries), rounds=args.rounds)
        rows.append((f"prefix reuse, batch {batch_size}", qps))
    print(f"{'':44s} {'q/s':>9s} {'% floor':>8s} {'/ full':>8s} {'/ naive':>8s}")
    for name, qps in rows:
        print(f"{name:44s} {qps:9.1f} {qps / floor_qps:8.1%} {qps / full_qps:7.1f}x {qps / naive_qps:7.1f}x")
    print(f"agreement: max |reuse - naive| {np.abs(reuse[: len(naive)] - naive).max():.1e}, "
          f"max |reuse - full| {np.abs(reuse - full).max():.1e} nats")


if __name__ == "__main__":
    main()
