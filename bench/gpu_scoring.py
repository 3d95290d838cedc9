"""Shared-prefix scoring on any CUDA machine without weights: a random-initialised model of a named shape.

The transformers backend's prefix reuse (``TransformersScorer``) against batched full prompts and
one-prompt-at-a-time (naive) scoring, on the real Banking77 CAP workload's token ids, with q/s,
% of the FLOP floor and the ratios, measured in one run. Random weights change no cost: the same
matmuls and attention run whatever the values.

The ids: by default the stored ones (``IDS_FILE``: the workload's first 4096 queries of 205
training sentences, built-in SmolLM2 tokenizer, written by ``--write-ids`` and checked against a
fresh encoding by tests/test_bench.py), so a bare GPU machine needs neither the tokenizer nor the
data; ``--tokenizer NAME`` tokenises the workload afresh (needs ../shared/data and that tokenizer,
e.g. ``meta-llama/Meta-Llama-3-8B-Instruct`` where it is downloaded).

FLOP floor = matmul rate (an 8192^2 matmul on CUDA, 2048^2 on CPU, in the model's dtype) / (2 x
non-embedding parameters x mean suffix+target tokens), as in bench/scoring.py.

Shapes: llama3-8b (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocab 128256) and
smollm2-135m (hidden 576, 30 layers, 9 heads, 3 KV heads, MLP 1536, vocab 49152).

Usage (GPU): PYTHONPATH=. .venv/bin/python bench/gpu_scoring.py --shape llama3-8b
       (CPU check): PYTHONPATH=. .venv/bin/python bench/gpu_scoring.py --shape smollm2-135m --device cpu \\
                        --queries 16 --batch-sizes 8 --full-batch-size 4 --naive-queries 2 --rounds 1 [--layers 2]
       (refresh the stored ids): PYTHONPATH=. .venv/bin/python bench/gpu_scoring.py --write-ids
"""

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bench.scoring import matmul_flops, timed
from pipeline.llm.base import EncodedQuery
from pipeline.llm.transformers_backend import TransformersScorer

IDS_FILE = Path(__file__).with_name("banking77_cap_ids.npz")
IDS_TOKENIZER, IDS_QUERIES = "smollm2-135m-instruct", 4096

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
    config = copy.deepcopy(SHAPES[shape])  # a copy: ``layers`` must not change the shape for the next caller
    config.pad_token_id = 0
    config.num_hidden_layers = layers or config.num_hidden_layers
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM._from_config(config, dtype=dtype).eval()


def encoded_workload(tokenizer_name: str, *, n_queries: int) -> tuple[list[int], list[EncodedQuery]]:
    """The Banking77 CAP workload (bench/scoring.py) tokenised afresh: its first ``n_queries`` queries' ids.

    Args:
        tokenizer_name: a model whose tokenizer makes the ids (needs it locally, and ../shared/data).
        n_queries: queries kept, from ceil(n_queries / 20) training sentences.

    Returns:
        (prefix ids, [(suffix ids, target ids), ...]).
    """
    from bench.scoring import workload
    from pipeline.llm.base import encode_queries
    from pipeline.models import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    prefix, queries = workload(tokenizer, n_sentences=min(10_003, math.ceil(n_queries / 20)))
    return encode_queries(tokenizer, prefix=prefix, queries=queries[:n_queries], max_length=8192)


def write_ids(path: Path = IDS_FILE) -> None:
    """Store ``encoded_workload(IDS_TOKENIZER, n_queries=IDS_QUERIES)`` as compressed flat int32 arrays with offsets."""
    prefix_ids, encoded = encoded_workload(IDS_TOKENIZER, n_queries=IDS_QUERIES)
    flat = {}
    for part, column in (("suffix", 0), ("target", 1)):
        rows = [query[column] for query in encoded]
        flat[part] = np.array([i for row in rows for i in row], dtype=np.int32)
        flat[f"{part}_offsets"] = np.cumsum([0] + [len(row) for row in rows], dtype=np.int64)
    np.savez_compressed(path, prefix=np.array(prefix_ids, dtype=np.int32), **flat)


def load_ids(path: Path = IDS_FILE, *, n_queries: int | None = None) -> tuple[list[int], list[EncodedQuery]]:
    """The stored workload ids (``write_ids``): (prefix ids, [(suffix ids, target ids), ...]), the first ``n_queries``.

    Raises:
        ValueError: more queries asked for than stored.
    """
    stored = np.load(path)
    offsets = {part: stored[f"{part}_offsets"] for part in ("suffix", "target")}
    available = len(offsets["target"]) - 1
    n_queries = available if n_queries is None else n_queries
    if n_queries > available:
        raise ValueError(f"{path.name} holds {available} queries, {n_queries} asked for; pass --tokenizer to tokenise more")
    rows = {part: [stored[part][offsets[part][i] : offsets[part][i + 1]].tolist() for i in range(n_queries)]
            for part in ("suffix", "target")}
    return stored["prefix"].tolist(), list(zip(rows["suffix"], rows["target"]))


@torch.inference_mode()
def score_full_batched(
    scorer: TransformersScorer, *, prefix_ids: list[int], encoded: list[EncodedQuery], batch_size: int
) -> np.ndarray:
    """Target log-probs with whole prompts (prefix + suffix + target) batched by length, no prefix reuse.

    Right padding with an attention mask; only the positions that predict target tokens go through the LM head.
    """
    model = scorer._model
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
    parser.add_argument("--tokenizer", help=f"tokenise the workload afresh with this model's tokenizer (default: the "
                                            f"stored {IDS_TOKENIZER} ids, {IDS_FILE.name})")
    parser.add_argument("--queries", type=int, default=IDS_QUERIES, help="CAP queries scored by reuse and full prompts")
    parser.add_argument("--batch-sizes", default="64,1024", help="comma-separated prefix-reuse batch sizes")
    parser.add_argument("--full-batch-size", type=int, default=64, help="batch size of the full-prompt baseline")
    parser.add_argument("--naive-queries", type=int, default=32, help="queries scored one at a time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, help="fewer layers than the shape's (a quick check, not a measurement)")
    parser.add_argument("--write-ids", action="store_true", help=f"write {IDS_FILE.name} from the live workload and stop")
    args = parser.parse_args()
    if args.write_ids:
        write_ids()
        return
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))

    if args.tokenizer:
        prefix_ids, encoded = encoded_workload(args.tokenizer, n_queries=args.queries)
    else:
        prefix_ids, encoded = load_ids(n_queries=args.queries)
    model = random_model(args.shape, device=args.device, dtype=dtype, layers=args.layers)
    if max(prefix_ids + [i for suffix, target in encoded for i in suffix + target]) >= model.config.vocab_size:
        raise SystemExit(f"the token ids exceed {args.shape}'s vocabulary; pick a tokenizer of that model family")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    scorer = TransformersScorer.from_loaded(model, None, batch_size=batch_sizes[0], identity=f"random:{args.shape}")
    tokens = np.mean([len(s) + len(t) for s, t in encoded])
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    rate = matmul_flops(device=args.device, dtype=dtype, n=8192 if args.device.startswith("cuda") else 2048)
    floor_qps = rate / (2 * non_embedding * tokens)
    on_cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(args.device) if on_cuda else f"CPU, {torch.get_num_threads()} threads"

    print(f"{args.shape}, {model.config.num_hidden_layers} layers (random weights, "
          f"{non_embedding / 1e9:.2f}B non-embedding parameters), {str(dtype)[6:]} on "
          f"{device_name}; Banking77 CAP workload ({args.tokenizer or IDS_TOKENIZER + ', stored'} token ids): prefix "
          f"{len(prefix_ids)} tokens, {len(encoded)} queries, mean suffix+target {tokens:.1f} tokens; best of "
          f"{args.rounds} rounds")
    print(f"matmul {rate / 1e12:.1f} TFLOP/s: FLOP floor {floor_qps:.1f} q/s")
    naive_queries = encoded[: args.naive_queries]
    naive_qps, naive = best_qps(lambda: scorer.score_naive_ids(prefix_ids=prefix_ids, queries=naive_queries, progress=False),
                                n=len(naive_queries), rounds=args.rounds)
    full_qps, full = best_qps(
        lambda: score_full_batched(scorer, prefix_ids=prefix_ids, encoded=encoded, batch_size=args.full_batch_size),
        n=len(encoded), rounds=args.rounds,
    )
    rows = [(f"naive (one prompt at a time, {len(naive_queries)} queries)", naive_qps),
            (f"full prompts, batch {args.full_batch_size}", full_qps)]
    reuse = None
    for batch_size in batch_sizes:
        scorer.batch_size = batch_size
        qps, reuse = best_qps(lambda: scorer.score_ids(prefix_ids=prefix_ids, queries=encoded, progress=False),
                              n=len(encoded), rounds=args.rounds)
        rows.append((f"prefix reuse, batch {batch_size}", qps))
    print(f"{'':44s} {'q/s':>9s} {'% floor':>8s} {'/ full':>8s} {'/ naive':>8s}")
    for name, qps in rows:
        print(f"{name:44s} {qps:9.1f} {qps / floor_qps:8.1%} {qps / full_qps:7.1f}x {qps / naive_qps:7.1f}x")
    print(f"agreement: max |reuse - naive| {np.abs(reuse[: len(naive)] - naive).max():.1e}, "
          f"max |reuse - full| {np.abs(reuse - full).max():.1e} nats")


if __name__ == "__main__":
    main()
