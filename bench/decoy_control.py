"""The decoy positive control as one script: which guided-loss forms make a student drop a planted shortcut.

Decoy SST-2 (``pipeline.data.decoy``): a class-indicating nonce word at a random position in every training
and validation sentence; the test is clean, matched, randomised and swapped. Every form below trains
from the same draw with the same seeds; a form "passes" when its randomised-test accuracy beats the
cross-entropy baseline's (paired by seed), never by the attribution it trains on. Validation carries
randomised decoys: it is what beta is chosen on (never the test).

    python bench/decoy_control.py --forms baseline rrr-100 guided-paper --seeds 0 1 2 --out /tmp/decoy.csv

Prints one row per (form, seed) as it finishes and appends it to ``--out`` (a CSV; rows already there
are skipped, so a killed run resumes). ``--summary A.csv B.csv ...`` prints the Markdown table of
those rows instead: mean per form and the paired differences (same seed) to the baseline and to the
form's registered ablation, with the report's bootstrap 95% CI. Rows at another ``--rate`` belong in
their own CSV (their baseline differs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.attribution.attribution import encode_words, integrated_gradients, pad_baseline, tokens_to_words  # noqa: E402
from pipeline.data.decoy import decoy_mass, decoy_positions, decoy_truth_prior, insert_decoys, strip_decoys  # noqa: E402
from pipeline.evaluation.predict import predict_proba  # noqa: E402
from pipeline.models import load_student  # noqa: E402
from pipeline.params import DECOY_COLUMN  # noqa: E402
from pipeline.priors.controls import random_prior  # noqa: E402
from pipeline.training.objectives import get_objective  # noqa: E402
from pipeline.training.objectives.align import Align, word_embeddings  # noqa: E402
from pipeline.training.objectives.base import Task  # noqa: E402
from pipeline.training.training import Example, train_student  # noqa: E402

LABELS = ["negative", "positive"]
DECOYS = {"negative": "zorvik", "positive": "plimbo"}
MIRROR = Path(os.environ.get("CAPFLOW_DATA_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data"))

# form -> (objective, settings, prior); prior None = no prior, "clean" = trained on decoy-free text
FORMS: dict[str, tuple[str, dict, str | None]] = {
    "ceiling": ("baseline", {}, "clean"),
    "baseline": ("baseline", {}, None),
    "guided-paper": ("guided", {"beta": 1.0, "ig_steps": 2}, "decoy_truth"),
    "guided-paper-b10": ("guided", {"beta": 10.0, "ig_steps": 2}, "decoy_truth"),
    "guided-logsm-cos": ("guided", {"beta": 1.0, "ig_steps": 2, "target": "log_softmax", "alignment": "cosine"},
                         "decoy_truth"),
    "guided-gradnorm": ("guided", {"beta": 1.0, "attribution": "gradient_norm", "target": "log_softmax",
                                   "alignment": "signed_mse"}, "decoy_truth"),
    "guided-gradnorm-b10": ("guided", {"beta": 10.0, "attribution": "gradient_norm", "target": "log_softmax",
                                       "alignment": "signed_mse"}, "decoy_truth"),
    "guided-gradnorm-cos": ("guided", {"beta": 1.0, "attribution": "gradient_norm", "target": "log_softmax",
                                       "alignment": "cosine"}, "decoy_truth"),
    "guided-gradnorm-random": ("guided", {"beta": 1.0, "attribution": "gradient_norm", "target": "log_softmax",
                                          "alignment": "signed_mse"}, "random"),
    "guided-gn-centred": ("guided", {"beta": 1.0, "attribution": "gradient_norm", "target": "centred_logit",
                                     "alignment": "signed_mse"}, "decoy_truth"),
    "guided-gn-centred-b10": ("guided", {"beta": 10.0, "attribution": "gradient_norm", "target": "centred_logit",
                                         "alignment": "signed_mse"}, "decoy_truth"),
    "guided-gn-centred-b100": ("guided", {"beta": 100.0, "attribution": "gradient_norm", "target": "centred_logit",
                                          "alignment": "signed_mse"}, "decoy_truth"),
    "guided-gn-centred-b10-random": ("guided", {"beta": 10.0, "attribution": "gradient_norm", "target": "centred_logit",
                                                "alignment": "signed_mse"}, "random"),
    "guided-gn-centred-cos": ("guided", {"beta": 1.0, "attribution": "gradient_norm", "target": "centred_logit",
                                         "alignment": "cosine"}, "decoy_truth"),
    "guided-occ": ("guided", {"beta": 1.0, "attribution": "occlusion", "target": "centred_logit",
                              "alignment": "signed_mse"}, "decoy_truth"),
    "guided-occ-b10": ("guided", {"beta": 10.0, "attribution": "occlusion", "target": "centred_logit",
                                  "alignment": "signed_mse"}, "decoy_truth"),
    "guided-occ-random": ("guided", {"beta": 1.0, "attribution": "occlusion", "target": "centred_logit",
                                     "alignment": "signed_mse"}, "random"),
    "rrr-1e4": ("rrr", {"lam": 1e4}, "decoy_truth"),
    "rrr-1e5": ("rrr", {"lam": 1e5}, "decoy_truth"),
    "rrr-1e6": ("rrr", {"lam": 1e6}, "decoy_truth"),
    "rrr-1e5-random": ("rrr", {"lam": 1e5}, "random"),
    # the sibling objectives (prior-free: they find the shortcut themselves, or not) and their registered
    # ablations, with the settings of their profiles (conf/profile/<name>.yaml); eX2L's confounder is the planted
    # decoy's label, which needs --rate below 1 (at 1.0 it is the label itself)
    "agm": ("agm", {"lambda_mask": 300.0}, None),
    "agm-random": ("agm-random", {"lambda_mask": 300.0}, None),
    # AGM with Ross et al.'s penalty on its own top tokens (SIBLINGS §1's option `rrr`): d sum_k log p_k does not
    # saturate as d log p_y does once the decoy is learnt; the weight is chosen on the randomised validation
    "agm-rrr-1e4": ("agm", {"lambda_mask": 1e4, "rrr": True}, None),
    "agm-rrr-1e5": ("agm", {"lambda_mask": 1e5, "rrr": True}, None),
    "agm-rrr-1e4-random": ("agm-random", {"lambda_mask": 1e4, "rrr": True}, None),
    "agm-rrr-1e5-random": ("agm-random", {"lambda_mask": 1e5, "rrr": True}, None),
    "regex": ("regex", {"attribution": "grad_input"}, None),
    "regex-no-explanation": ("regex-no-explanation", {"attribution": "grad_input"}, None),  # unused at γ = δ = 0
    "align": ("align", {"warmup_epochs": 1}, None),
    "align-fixed": ("align-fixed", {"warmup_epochs": 1}, None),
    "ex2l": ("ex2l", {"confounder": DECOY_COLUMN}, None),
    "ex2l-multitask": ("ex2l-multitask", {"confounder": DECOY_COLUMN}, None),
}


def load_split(split: str, *, per_label: int, seed: int) -> pl.DataFrame:
    frame = pl.read_parquet(MIRROR / "sentiment" / "movies_sst2" / f"{split}.parquet").select("text", "label")
    frame = frame.with_row_index("row").with_columns(id=pl.format("{}-{}", pl.lit(split), pl.col("row"))).drop("row")
    parts = [frame.filter(pl.col("label") == label).sample(n=per_label, seed=seed, shuffle=True) for label in LABELS]
    return pl.concat(parts).sort("id")


def own_ig(model, tokenizer, sentences, labels, *, steps: int, max_length: int) -> list[np.ndarray]:
    """Accurate word IG (``steps``) of the predicted label, dropout off, 16 sentences at a time."""
    out = []
    for start in range(0, len(sentences), 16):
        chunk = sentences[start : start + 16]
        encoding, word_index = encode_words(tokenizer, chunk, max_length=max_length)
        tokens = integrated_gradients(
            model, input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
            baseline_ids=pad_baseline(input_ids=encoding["input_ids"], word_index=word_index,
                                      pad_token_id=tokenizer.pad_token_id),
            target=torch.as_tensor(labels[start : start + 16]), steps=steps,
        )
        words, _ = tokens_to_words(tokens, word_index, n_words=max(len(w) for w in chunk))
        out += [words[i, : len(w)].detach().double().numpy() for i, w in enumerate(chunk)]
    return out


def mask_on_decoy(model, tokenizer, masker: torch.nn.Module, sentences: list[list[str]], *, positions: np.ndarray,
                  max_length: int) -> dict:
    """ALIGN's learnt mask M on held-out sentences: its mean on the decoy's tokens and on the other words' tokens.

    M > 1/2 keeps a token (about ``keep_rate`` of each sentence); a masker that drops the decoy gives it a low M.
    ``positions``: each sentence's decoy word index (``decoy_positions``; -1: none).
    """
    encoding, word_index = encode_words(tokenizer, sentences, max_length=max_length)
    real = word_index >= 0
    with torch.no_grad():
        embeds, _ = word_embeddings(model, input_ids=encoding["input_ids"], word_index=word_index)
        mask = masker(embeds, attention_mask=encoding["attention_mask"], real=real)
    decoy = torch.as_tensor(positions)[:, None]
    on_decoy = real & (decoy >= 0) & (word_index == decoy)
    return {"mask_decoy": round(float(mask[on_decoy].mean()), 4), "mask_other": round(float(mask[real & ~on_decoy].mean()), 4)}


def run(form: str, seed: int, data: dict[str, pl.DataFrame], args) -> dict:
    objective_name, settings, prior_name = FORMS[form]
    objective = get_objective(objective_name, **settings)
    train = data["train"]
    texts = [strip_decoys(t, DECOYS.values()) if prior_name == "clean" else t for t in train["text"]]
    words = [t.split() for t in texts]
    priors = (decoy_truth_prior(words, DECOYS.values()) if prior_name == "decoy_truth"
              else random_prior(train["id"].to_list(), words, seed=0) if prior_name == "random" else [None] * len(words))
    columns = [{c: row[c] for c in objective.columns} or None for row in train.iter_rows(named=True)]
    examples = [Example(w, LABELS.index(label), p, c) for w, label, p, c in zip(words, train["label"], priors, columns)]
    task = Task(num_labels=2, column_values={c: tuple(sorted(train[c].unique())) for c in objective.columns})
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=seed)
    start = time.perf_counter()
    model, log, modules = train_student(model=model, tokenizer=tokenizer, train=examples, objective=objective,
                                  task=task, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                  warmup_fraction=0.1, seed=seed, device="cpu", max_length=args.max_length,
                                  clip=args.clip)
    seconds = time.perf_counter() - start
    # loss - CE, the objective's own weighted terms, over the first and last 10 steps: do they act, or vanish once
    # the decoy is learnt (AGM's penalty scales with 1 - p_y)?
    added = log["loss"] - log["ce"]
    row = {"form": form, "seed": seed, "train_seconds": round(seconds, 1), "final_ce": float(log["ce"].tail(10).mean()),
           "final_align": float(log["align"].tail(10).mean()), "added_first": float(added.head(10).mean()),
           "added_last": float(added.tail(10).mean())}
    if "own_norm" in log.columns:  # the student's attribution norm, early and late (the 1 / ||a|| defect)
        norms = log["own_norm"].drop_nans()
        row |= {"own_norm_first": float(norms.head(10).mean()), "own_norm_last": float(norms.tail(10).mean())}
    predictions = {}
    for name in ("validation", "test", "matched", "randomised", "swapped"):
        frame = data[name]
        sentences = [t.split() for t in frame["text"]]
        probabilities = predict_proba(model, tokenizer, sentences, batch_size=64, device="cpu", max_length=args.max_length)
        predictions[name] = probabilities.argmax(1)
        gold = np.array([LABELS.index(label) for label in frame["label"]])
        row[f"{name}_accuracy"] = round(100 * float((predictions[name] == gold).mean()), 2)
    row["flip_rate"] = round(100 * float((predictions["matched"] != predictions["swapped"]).mean()), 2)
    held_out = [t.split() for t in data["randomised"]["text"][: args.mass_sentences]]
    scores = own_ig(model, tokenizer, held_out, predictions["randomised"][: args.mass_sentences], steps=32,
                    max_length=args.max_length)
    positions = decoy_positions(held_out, DECOYS.values())
    row["decoy_mass"] = round(decoy_mass(scores, positions), 4)
    if isinstance(objective, Align) and not objective.fixed_mask:  # ALIGN's learnt mask: does it drop the decoy?
        row |= mask_on_decoy(model, tokenizer, modules["masker"], held_out, positions=positions, max_length=args.max_length)
    return row


SUMMARY_COLUMNS = ("validation_accuracy", "test_accuracy", "matched_accuracy", "randomised_accuracy", "flip_rate", "decoy_mass")


def ablation_form(form: str, forms: set[str]) -> str | None:
    """The form ``form`` is paired with as its ablation: among ``forms``, the one with its objective's registered
    ablation (``Objective.ablation``: another objective, or another prior) and the same settings otherwise."""
    from pipeline.training.objectives import objective_class

    objective_name, settings, prior = FORMS[form]
    ablation = objective_class(objective_name).ablation
    if ablation is None or (ablation.prior and prior is None):
        return None
    wanted = (ablation.objective or objective_name, settings, ablation.prior or prior)
    return next((other for other in sorted(forms) if FORMS.get(other) == wanted), None)


def summary(files: list[Path]) -> str:
    """The Markdown table of the rows in ``files``: per form, n seeds, means, and randomised accuracy paired by seed
    with the baseline's and with its ablation's (``ablation_form``)."""
    from pipeline.reporting.report import _paired_cell

    rows = pl.concat([pl.read_csv(f).select("form", "seed", *SUMMARY_COLUMNS) for f in files], how="vertical_relaxed")
    rows = rows.unique(["form", "seed"], keep="first", maintain_order=True)
    randomised = {form: dict(rows.filter(pl.col("form") == form).select("seed", "randomised_accuracy").iter_rows())
                  for form in rows["form"].unique()}

    def paired(form: str, other: str | None) -> str:
        if other is None or other not in randomised or form == other:
            return ""
        diffs = np.array([r - randomised[other][s] for s, r in randomised[form].items() if s in randomised[other]])
        return f"{_paired_cell(diffs)} (n={len(diffs)})" if len(diffs) >= 2 else ""

    lines = ["| form | n | " + " | ".join(SUMMARY_COLUMNS) + " | randomised − baseline | randomised − ablation |",
             "|---" * (len(SUMMARY_COLUMNS) + 4) + "|"]
    forms = set(randomised)
    for form in rows["form"].unique(maintain_order=True):
        runs = rows.filter(pl.col("form") == form)
        ablation = ablation_form(form, forms)
        means = [f"{runs[c].mean():.4f}" if c == "decoy_mass" else f"{runs[c].mean():.2f}" for c in SUMMARY_COLUMNS]
        versus = paired(form, ablation) and f"{paired(form, ablation)} vs {ablation}"
        lines.append(f"| {form} | {len(runs)} | " + " | ".join(means) + f" | {paired(form, 'baseline')} | {versus} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", nargs="+", type=Path, help="print the table of these result CSVs and exit")
    parser.add_argument("--forms", nargs="+", default=["ceiling", "baseline", "rrr-1e5", "guided-gn-centred-b10"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-per-label", type=int, default=150)
    parser.add_argument("--validation-per-label", type=int, default=100)
    parser.add_argument("--test-per-label", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--clip", default="total")
    parser.add_argument("--mass-sentences", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1.0, help="share of training sentences with their own label's decoy")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.summary:
        print(summary(args.summary))
        return
    if args.out is None:
        parser.error("--out is required unless --summary")
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    common = {"labels": LABELS, "seed": 0}
    train = load_split("train", per_label=args.train_per_label, seed=0)
    validation = load_split("validation", per_label=args.validation_per_label, seed=0)
    test = load_split("test", per_label=args.test_per_label, seed=0)
    data = {
        "train": insert_decoys(train, DECOYS, rate=args.rate, **common),
        "validation": insert_decoys(validation, DECOYS, rate=1.0, variant="randomised", **common),
        "test": test,
        **{variant: insert_decoys(test, DECOYS, rate=1.0, variant=variant, **common)
           for variant in ("matched", "randomised", "swapped")},
    }
    done = set()
    if args.out.is_file():
        done = {(r["form"], r["seed"]) for r in pl.read_csv(args.out).iter_rows(named=True)}
    config = {k: v for k, v in vars(args).items() if k not in ("forms", "seeds", "out")}
    print(json.dumps(config))
    for form in args.forms:
        for seed in args.seeds:
            if (form, seed) in done:
                continue
            row = run(form, seed, data, args) | {"config": json.dumps(config, default=str)}
            print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)
            frame = pl.DataFrame([row])
            if args.out.is_file():
                frame = pl.concat([pl.read_csv(args.out), frame], how="diagonal_relaxed")
            frame.write_csv(args.out)


if __name__ == "__main__":
    main()
