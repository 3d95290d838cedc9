"""Time a guided training step (CE + beta * MSE of the differentiable IG) against a CE-only step.

MiniLM on CPU, one batch of 16 Banking77 sentences (a seeded sample), through the real loop
(``train_student``); each method runs STEPS steps per call, calls alternate, best of ROUNDS.
Target: guided <= (m + 2) x CE.
Usage: PYTHONPATH=. .venv/bin/python bench/train.py [m]   (m = IG steps, default 8)
On a CPU shared with other jobs, run with OMP_NUM_THREADS=1: contended OpenMP threads slow
torch down 10-25x and make any timing meaningless.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from pipeline.methods import Method, get_method
from pipeline.models import load_student
from pipeline.params import MIRROR_ENV
from pipeline.training import train_student

BATCH, STEPS, ROUNDS = 16, 3, 3
DATA = Path(os.environ.get(MIRROR_ENV, "../shared/data")) / "banking77" / "train.parquet"


def seconds_per_step(model, tokenizer, initial: dict, train: list, method: Method) -> float:
    model.load_state_dict(initial)
    start = time.perf_counter()
    train_student(
        model=model, tokenizer=tokenizer, train=train, method=method, epochs=STEPS, lr=5e-5,
        batch_size=BATCH, warmup_fraction=0.0, seed=0, device="cpu",
    )
    return (time.perf_counter() - start) / STEPS


def main() -> None:
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    frame = pl.read_parquet(DATA).sample(BATCH, seed=0)
    labels = sorted(frame["label"].unique())
    rng = np.random.default_rng(0)
    pairs = zip(frame["text"], frame["label"])
    train = [(text.split(), labels.index(label), rng.random(len(text.split()))) for text, label in pairs]
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=len(labels), seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    ce_method, guided_method = get_method("baseline"), get_method("cap+ig+lime", steps=m)

    seconds_per_step(model, tokenizer, initial, train, guided_method)  # warm-up (allocator, threads)
    ce, guided = [], []
    for _ in range(ROUNDS):
        ce.append(seconds_per_step(model, tokenizer, initial, train, ce_method))
        guided.append(seconds_per_step(model, tokenizer, initial, train, guided_method))
    ce_s, guided_s = min(ce), min(guided)
    tokens = max(len(tokenizer(" ".join(w))["input_ids"]) for w, _, _ in train)
    print(f"MiniLM-L6, CPU, {torch.get_num_threads()} threads, batch {BATCH} Banking77 sentences ({tokens} tokens max), "
          f"m = {m}, best of {ROUNDS} x {STEPS} steps")
    print(f"CE step:     {BATCH / ce_s:7.1f} examples/s  ({ce_s * 1e3:.0f} ms/step)")
    print(f"guided step: {BATCH / guided_s:7.1f} examples/s  ({guided_s * 1e3:.0f} ms/step)")
    print(f"ratio guided / CE: {guided_s / ce_s:.1f}x   (target <= m + 2 = {m + 2})")


if __name__ == "__main__":
    main()
