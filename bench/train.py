"""Time one training step of every registered objective against a cross-entropy step, in one run.

MiniLM on CPU, one batch of 16 Banking77 sentences (a seeded sample, a random prior, a two-valued
extra column for objectives that declare one), through the real loop (``train_student``); each
objective runs STEPS steps per call with its default settings (guided: m IG steps), calls
alternate, best of ROUNDS; all ratios come from the same run. Targets: guided <= (m + 2) x CE;
SIBLINGS.md §5 plans AGM ~3x, REGEX ~6x (gradient x input masking) and ~13x (IG masking), eX2L ~3x,
ALIGN ~4x after its warm-up (here without one).
Usage: PYTHONPATH=. .venv/bin/python bench/train.py [m]   (m = guided's IG steps, default 8)
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
from pipeline.params import MIRROR_ENV
from pipeline.training.objectives import OBJECTIVES, get_objective
from pipeline.training.objectives.base import Objective, Task
from pipeline.training.training import Example, train_student

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
    settings = {"guided": {"ig_steps": m}, "align": {"warmup_epochs": 0}, "align-fixed": {"warmup_epochs": 0}}
    objectives = {name: get_objective(name, **settings.get(name, {})) for name in OBJECTIVES}
    objectives["regex grad_input"] = get_objective("regex", attribution="grad_input")
    columns = sorted({c for objective in objectives.values() for c in objective.columns})
    train = [Example(text.split(), labels.index(label), rng.random(len(text.split())), {c: f"v{i % 2}" for c in columns})
             for i, (text, label) in enumerate(zip(frame["text"], frame["label"]))]
    task = Task(num_labels=len(labels), column_values={c: ("v0", "v1") for c in columns})
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=len(labels), seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    seconds_per_step(model, tokenizer, initial, train, objectives["guided"], task)  # warm-up (allocator, threads)
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for _ in range(ROUNDS):
        for name, objective in objectives.items():
            times[name].append(seconds_per_step(model, tokenizer, initial, train, objective, task))
    ce_s = min(times["baseline"])
    tokens = max(len(tokenizer(" ".join(e.words))["input_ids"]) for e in train)
    print(f"MiniLM-L6, CPU, {torch.get_num_threads()} threads, batch {BATCH} Banking77 sentences ({tokens} tokens max), "
          f"guided m = {m}, best of {ROUNDS} x {STEPS} steps")
    for name, seconds in times.items():
        step = min(seconds)
        print(f"{name:>12}: {BATCH / step:7.1f} examples/s  ({step * 1e3:5.0f} ms/step)  {step / ce_s:5.1f}x CE")
    print(f"target for guided: <= m + 2 = {m + 2}x CE")


if __name__ == "__main__":
    main()
