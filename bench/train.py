"""Time one training step of each objective against a cross-entropy (baseline) step.

MiniLM on CPU, one batch of 16 Banking77 sentences (a seeded sample, random stand-in priors for
the guided row), through the real loop (``train_student``); each objective runs STEPS steps per
call, calls alternate within a round, best of ROUNDS; all ratios come from the same run.
Targets: guided <= (m + 2) x CE; SIBLINGS.md §5 plans AGM ~3x, REGEX ~6x (gradient x input
masking) and ~13x (IG masking).
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

from pipeline.models import load_student
from pipeline.objectives import get_objective
from pipeline.objectives.base import Objective, Task
from pipeline.params import MIRROR_ENV
from pipeline.training import Example, train_student

BATCH, STEPS, ROUNDS = 16, 3, 3
DATA = Path(os.environ.get(MIRROR_ENV, "../shared/data")) / "banking77" / "train.parquet"


def seconds_per_step(model, tokenizer, initial: dict, train: list, objective: Objective, task: Task) -> float:
    model.load_state_dict(initial)
    start = time.perf_counter()
    train_student(
        model=model, tokenizer=tokenizer, train=train, objective=objective, task=task, epochs=STEPS, lr=5e-5,
        batch_size=BATCH, warmup_fraction=0.0, seed=0, device="cpu",
    )
    return (time.perf_counter() - start) / STEPS


def main() -> None:
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    frame = pl.read_parquet(DATA).sample(BATCH, seed=0)
    labels = sorted(frame["label"].unique())
    rng = np.random.default_rng(0)
    pairs = zip(frame["text"], frame["label"])
    train = [Example(text.split(), labels.index(label), rng.random(len(text.split()))) for text, label in pairs]
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=len(labels), seed=0)
    task = Task(num_labels=len(labels))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    rows = {
        "CE (baseline)": get_objective("baseline"),
        f"guided (IG, m = {m})": get_objective("guided", ig_steps=m),
        "AGM": get_objective("agm"),
        "AGM-random": get_objective("agm-random"),
        f"REGEX (IG masking, m = {m})": get_objective("regex", ig_steps=m),
        "REGEX (grad x input masking)": get_objective("regex", attribution="grad_input"),
    }

    seconds_per_step(model, tokenizer, initial, train, rows[f"guided (IG, m = {m})"], task)  # warm-up (allocator, threads)
    times = {name: [] for name in rows}
    for _ in range(ROUNDS):
        for name, objective in rows.items():
            times[name].append(seconds_per_step(model, tokenizer, initial, train, objective, task))
    best = {name: min(seconds) for name, seconds in times.items()}
    ce_s = best["CE (baseline)"]
    tokens = max(len(tokenizer(" ".join(e.words))["input_ids"]) for e in train)
    print(f"MiniLM-L6, CPU, {torch.get_num_threads()} threads, batch {BATCH} Banking77 sentences ({tokens} tokens max), "
          f"m = {m}, best of {ROUNDS} x {STEPS} steps")
    for name, seconds in best.items():
        print(f"{name:30s} {BATCH / seconds:7.1f} examples/s  ({seconds * 1e3:6.0f} ms/step)  {seconds / ce_s:5.1f}x CE")
    print(f"guided target <= m + 2 = {m + 2}x CE")


if __name__ == "__main__":
    main()
