"""How many test sentences ERASER needs: paired differences on the whole test split against samples of it.

Run in a checkout whose pipeline has run (its params.yaml, data/ and models/). For every student
``<method>-seed<S>`` it computes the per-sentence ERASER AOPC as the evaluation does (rationale: the student's own
IG, ``evaluation.ig_steps``, toward its prediction) on the whole test split, timing that per sentence. Then, for
each method paired with the baseline by seed, the mean difference and the report's 95 % CI (``paired_ci``) on
every sentence, on the evaluation's sample of each size (``capped_pool``, seed 0), and over ``--draws`` random
samples of each size: the sd of the mean difference across samples (what the choice of sentences adds), the mean
CI width, and how often the sample's CI says what the whole split's says (excludes 0 or not).

    cd <run checkout> && python <capflow>/bench/eraser_sentences.py --methods baseline guided.random --sizes 100 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.artifacts import DATASET_SCHEMA, dataset_split_file, student_dir  # noqa: E402
from pipeline.data.fewshot import capped_pool  # noqa: E402
from pipeline.evaluation.eraser import aopc  # noqa: E402
from pipeline.evaluation.evaluation import self_rationale  # noqa: E402
from pipeline.evaluation.predict import predict_proba  # noqa: E402
from pipeline.io import read_parquet  # noqa: E402
from pipeline.models import load_trained_student  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.reporting.report import paired_ci  # noqa: E402

BASELINE = "baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="banking77_mini_decoy")
    parser.add_argument("--setting", default="k5-seed0")
    parser.add_argument("--methods", nargs="+", required=True, help=f"<objective>[.<prior>], the first {BASELINE!r}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 50])
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    if args.methods[0] != BASELINE:
        parser.error(f"--methods must start with {BASELINE!r}: the others are paired with it")
    torch.set_num_threads(1)
    params = load_params()
    evaluation, max_length = params.evaluation, params.student.max_length
    test = read_parquet(dataset_split_file(args.dataset, "test"), schema=DATASET_SCHEMA).sort("id")
    sentences = [text.split() for text in test["text"]]
    per_sentence: dict[str, np.ndarray] = {}  # "<method> <key>" -> (seeds, sentences), percent
    seconds = 0.0
    for method in args.methods:
        values = {"comprehensiveness": [], "sufficiency": []}
        for seed in args.seeds:
            model, tokenizer = load_trained_student(student_dir(args.dataset, args.setting, method, seed))
            start = time.perf_counter()
            comprehensiveness, sufficiency = _student_aopc(model, tokenizer, sentences, evaluation=evaluation,
                                                           max_length=max_length)
            seconds += time.perf_counter() - start
            values["comprehensiveness"].append(100.0 * comprehensiveness)
            values["sufficiency"].append(100.0 * sufficiency)
        per_sentence |= {f"{method} {key}": np.stack(rows) for key, rows in values.items()}
    n_students = len(args.methods) * len(args.seeds)
    print(f"{args.dataset}/{args.setting}: {len(sentences)} test sentences, {n_students} students, "
          f"ERASER {1000 * seconds / (n_students * len(sentences)):.1f} ms per sentence and student (one thread)")
    rng = np.random.default_rng(0)
    ids = test["id"].to_list()
    print(f"{'method':<24} {'metric':<17} {'sentences':>9} {'mean diff [95% CI]':>26} {'width':>6} "
          f"{'sd over samples':>15} {'same verdict':>12}")
    for method in args.methods[1:]:
        for key in ("comprehensiveness", "sufficiency"):
            differences = per_sentence[f"{method} {key}"] - per_sentence[f"{BASELINE} {key}"]  # (seeds, sentences)
            full = differences.mean(axis=1)
            low, high = paired_ci(full)
            verdict = low > 0 or high < 0
            print(f"{method:<24} {key:<17} {'all':>9} {_cell(full, low, high):>26} {high - low:>6.2f}")
            for size in args.sizes:
                sample = capped_pool(test, max_rows=size, seed=0)["id"].to_list()
                columns = np.array([ids.index(i) for i in sample])
                picked = differences[:, columns].mean(axis=1)
                low, high = paired_ci(picked)
                draws = []
                for _ in range(args.draws):
                    drawn = differences[:, rng.choice(len(ids), size=size, replace=False)].mean(axis=1)
                    d_low, d_high = paired_ci(drawn)
                    draws.append((drawn.mean(), d_high - d_low, (d_low > 0 or d_high < 0) == verdict))
                draws = np.array(draws)
                print(f"{'':<24} {'':<17} {size:>9} {_cell(picked, low, high):>26} {high - low:>6.2f} "
                      f"{draws[:, 0].std():>15.2f} {100 * draws[:, 2].mean():>11.0f}%   "
                      f"(mean width over samples {draws[:, 1].mean():.2f})", flush=True)


def _student_aopc(model, tokenizer, sentences: list[list[str]], *, evaluation, max_length: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence comprehensiveness and sufficiency of one student, as ``evaluate_student`` reads them."""
    _, rationale = self_rationale(model, tokenizer, sentences, params=evaluation, max_length=max_length, device="cpu")

    def predict(texts: list[str]) -> np.ndarray:
        return predict_proba(model, tokenizer, [t.split() for t in texts], batch_size=evaluation.batch_size,
                             max_length=max_length, device="cpu")

    return aopc(predict, sentences, rationale, fractions=evaluation.fractions)


def _cell(differences: np.ndarray, low: float, high: float) -> str:
    return f"{differences.mean():+.2f} [{low:+.2f}, {high:+.2f}]"


if __name__ == "__main__":
    main()
