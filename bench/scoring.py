"""Time every scoring backend on the real CAP workload in one run, as ratios to the naive reference and the FLOP floor.

Banking77's CAP prompt (77 labels in the prefix) with SmolLM2-135M-Instruct in float32 on CPU; the
queries are CAP perturbations (16 random masks + the single-word masks) of training sentences.

- naive: each full prompt through the whole model (transformers, ``score_naive``).
- transformers prefix reuse: capflow's default backend (``TransformersScorer.score``).
- vllm next_token / prompt_logprobs: the vllm backend's two modes on vLLM's CPU build, run in
  ``.venv-vllm`` (``make test-vllm`` builds it) as a subprocess of this script on an evenly spread
  subset of the queries (``--vllm-queries``); skipped when that venv does not exist.
- FLOP floor = matmul rate / (2 x non-embedding parameters x mean suffix+target tokens): the rate at
  which the weights alone could process the tokens a query must add (attention over the prefix,
  norms and the LM head at target positions are extra work the floor ignores).

Machines shared with other jobs slow runs down unevenly, so naive, reuse and the matmul rate are
measured in interleaved rounds and the best round of each is kept; each vLLM mode is timed
``--rounds`` times after a warm-up call and its best kept.

Usage: PYTHONPATH=. .venv/bin/python bench/scoring.py [--batch-size 32] [--rounds 3] [--vllm-queries 128]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "banking77"
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
N_SENTENCES, N_MASKS, N_NAIVE, N_WARM_UP = 16, 16, 6, 8
MODEL = "smollm2-135m-instruct"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def matmul_flops(*, device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """FLOP/s of an n x n matmul on ``device`` in ``dtype`` (best of 10, synchronised on CUDA)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run() -> None:
        a @ b
        sync()

    run()
    return 2 * n**3 / min(timed(run)[0] for _ in range(10))


def workload(tokenizer, *, n_sentences: int = N_SENTENCES) -> tuple[str, list[tuple[str, str]]]:
    """The CAP prompt's shared prefix and the CAP queries (suffix, target) of ``n_sentences`` training sentences.

    Args:
        tokenizer: the scoring model's tokenizer (it renders the chat template).
        n_sentences: sentences spread over Banking77's training set (at most its 10,003).

    Returns:
        (prefix, [(suffix, target), ...]): 16 random masks + the single-word masks per sentence.
    """
    # here, not at the top: bench/gpu_scoring.py borrows this module's timers on GPU machines without polars
    import polars as pl

    from pipeline.data.perturb import cap_masks, masked_sentence
    from pipeline.prompts import CAP_TEMPLATE, build_query, split_prompt

    labels = (DATA / "labels.txt").read_text().split()
    frame = pl.read_parquet(DATA / "train.parquet").gather_every(10_003 // n_sentences).head(n_sentences)
    prefix, suffix_template = split_prompt(CAP_TEMPLATE, tokenizer=tokenizer, labels=labels)
    rng = np.random.default_rng(0)
    queries = [
        build_query(suffix_template, sentence=masked_sentence(text.split(), mask), label=label)
        for text, label in frame.select("text", "label").iter_rows()
        for mask in cap_masks(len(text.split()), n=N_MASKS, rng=rng)
    ]
    return prefix, queries


def spread(n_total: int, n: int) -> np.ndarray:
    """``n`` indices evenly spread over ``range(n_total)`` (every sentence represented)."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def vllm_worker(*, n_queries: int, rounds: int, out: Path) -> None:
    """In .venv-vllm: time both vllm modes on the spread subset; write {mode: {qps, scores}} as JSON to ``out``."""
    from pipeline.llm.vllm_backend import VllmScorer
    from pipeline.params import VllmParams

    scorer = VllmScorer(model=MODEL, batch_size=256, engine=VllmParams(dtype="float32"))
    prefix, queries = workload(scorer.tokenizer)
    subset = [queries[i] for i in spread(len(queries), n_queries)]
    results = {}
    for mode in ("next_token", "prompt_logprobs"):
        scorer.mode = mode
        scorer.score(prefix=prefix, queries=subset[:N_WARM_UP], progress=False)
        times = []
        for _ in range(rounds):
            seconds, scores = timed(lambda: scorer.score(prefix=prefix, queries=subset, progress=False))
            times.append(seconds)
        results[mode] = {"qps": len(subset) / min(times), "scores": scores.tolist()}
    out.write_text(json.dumps(results))


def run_vllm(*, n_queries: int, rounds: int) -> dict | None:
    """The vllm worker's results, or None (with the reason printed) when .venv-vllm is missing or fails."""
    if not VLLM_PYTHON.exists():
        print(f"vllm: skipped, {VLLM_PYTHON.parent.parent.name} not found (make test-vllm builds it)")
        return None
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"} | os.environ | {"PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vllm.json"
        command = [str(VLLM_PYTHON), __file__, "--vllm-worker", str(out), "--vllm-queries", str(n_queries),
                   "--rounds", str(rounds)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"vllm: worker failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            return None
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vllm-queries", type=int, default=128, help="queries each vllm mode scores")
    parser.add_argument("--vllm-worker", type=Path, help=argparse.SUPPRESS)  # the subprocess in .venv-vllm: its output file
    args = parser.parse_args()
    if args.vllm_worker:
        vllm_worker(n_queries=args.vllm_queries, rounds=args.rounds, out=args.vllm_worker)
        return

    from pipeline.llm.transformers_backend import TransformersScorer

    scorer = TransformersScorer(model=MODEL, batch_size=args.batch_size)
    prefix, queries = workload(scorer.tokenizer)
    prefix_ids, encoded = scorer.encode(prefix=prefix, queries=queries)
    tokens = np.mean([len(s) + len(t) for s, t in encoded])
    model = scorer._model
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)

    vllm = run_vllm(n_queries=args.vllm_queries, rounds=args.rounds)
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
    rows = [("naive (full prompt per query)", naive_qps, f"{N_NAIVE} queries"),
            ("transformers prefix reuse", reuse_qps, f"max |reuse - naive| {np.abs(reused[:N_NAIVE] - naive).max():.1e}")]
    for mode, result in (vllm or {}).items():
        subset = spread(len(queries), args.vllm_queries)
        gap = np.abs(np.array(result["scores"]) - reused[subset]).max()
        rows.append((f"vllm {mode}", result["qps"], f"{len(subset)} queries, max |vllm - reuse| {gap:.1e}"))
    floor_note = f"matmul {rate / 1e9:.0f} GFLOP/s, {non_embedding / 1e6:.1f}M non-embedding parameters"
    rows.append(("FLOP floor", floor_qps, floor_note))
    print(f"{'':32s} {'q/s':>8s} {'/ naive':>8s} {'/ floor':>8s} {'/ reuse':>8s}")
    for name, qps, note in rows:
        print(f"{name:32s} {qps:8.2f} {qps / naive_qps:7.1f}x {qps / floor_qps:8.0%} {qps / reuse_qps:7.2f}x  {note}")


if __name__ == "__main__":
    main()
