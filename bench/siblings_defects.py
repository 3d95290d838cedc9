"""Reproduce and measure issue 22's sibling defects (REGEX, eX2L, ALIGN), one subcommand each.

MiniLM student on CPU, real shared data, small seeded samples (minutes per call on 2 shared cores).
Usage (from the checkout, one thread, niced: other jobs share the machine):
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/siblings_defects.py regex-gradients
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/siblings_defects.py regex-curves baseline regex-raw:alpha=1 \
        regex:alpha=0.01
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/siblings_defects.py ex2l-maps --max-length 64 --max-words 32 \
        --train ex2l:layer=-1,map_floor=0 ex2l
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/siblings_defects.py ex2l-truncation
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/siblings_defects.py align-mask old align

regex-*: conf/profile/regex.yaml's training settings (32 movies_sst2 sentences per label, batch 8, 2 epochs
= 16 steps, lr 3e-4, max_length 80, gradient x input masking); validation = 100 per label of
movies_sst2's validation split. ``regex-raw`` is the form before the fix (issue 22, item 1): the
input-gradient penalty and VAT's perturbation on the raw word-piece embeddings, before the embedding LayerNorm.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the checkout

from pipeline.attribution.attribution import encode_words  # noqa: E402
from pipeline.evaluation.predict import predict_proba  # noqa: E402
from pipeline.models import eval_mode, load_student  # noqa: E402
from pipeline.params import MIRROR_ENV  # noqa: E402
from pipeline.training.objectives import get_objective  # noqa: E402
from pipeline.training.objectives.base import Batch, Objective, Task  # noqa: E402
from pipeline.training.objectives.regex import Regex, input_gradient_penalty, kl_divergence  # noqa: E402
from pipeline.training.training import Example, train_student  # noqa: E402

DATA = Path(os.environ.get(MIRROR_ENV, Path(__file__).resolve().parents[2] / "shared" / "data"))
SENTIMENT = ("negative", "positive")


def sentiment_sample(split: str, per_label: int, *, seed: int = 0, path: str = "sentiment/movies_sst2") -> list[Example]:
    frame = pl.read_parquet(DATA / path / f"{split}.parquet")
    rows = pl.concat([frame.filter(pl.col("label") == label).sample(per_label, seed=seed) for label in SENTIMENT])
    return [Example(text.split(), SENTIMENT.index(label)) for text, label in rows.select("text", "label").iter_rows()]


def to_batch(examples: list[Example], tokenizer, *, max_length: int, columns: Mapping[str, torch.Tensor] | None = None) -> Batch:
    encoding, word_index = encode_words(tokenizer, [e.words for e in examples], max_length=max_length)
    return Batch(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                 labels=torch.tensor([e.label for e in examples]), word_index=word_index,
                 words=[e.words for e in examples], columns=dict(columns or {}))


def parse_run(spec: str) -> tuple[str, dict[str, object]]:
    """``name[:key=value,...]`` -> (name, settings); values parsed as float, int or string."""
    name, _, rest = spec.partition(":")
    settings: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                settings[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            settings[key] = value
    return name, settings


# ----------------------------------------------------------------------------------------------- REGEX


@dataclasses.dataclass(frozen=True)
class RegexRaw(Regex):
    """REGEX before issue 22's fix: the input-gradient penalty alpha ||d CE / d E||^2 and VAT's perturbation
    (norm epsilon) on E, the raw word-piece embeddings before the embedding LayerNorm."""

    def loss(self, *, model, modules, batch, logits, ce, phase, epoch):
        # the explanation terms as the objective computes them; the two old terms from their own eval-mode forward
        loss, terms = Regex.loss(dataclasses.replace(self, alpha=0.0, beta=0.0), model=model, modules=modules,
                                 batch=batch, logits=logits, ce=ce, phase=phase, epoch=epoch)
        if self.alpha == 0 and self.beta == 0:
            return loss, terms
        real = batch.word_index >= 0
        with eval_mode(model):
            embeddings = model.get_input_embeddings()(batch.input_ids)
            log_probs = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask).logits.float().log_softmax(-1)
            if self.alpha > 0:
                penalty = input_gradient_penalty(inputs=embeddings, log_probs=log_probs, labels=batch.labels)
                loss, terms = loss + self.alpha * penalty, terms | {"input_grad": penalty.item()}
            if self.beta > 0:
                clean, fixed = log_probs.detach(), embeddings.detach()
                on_real = real.unsqueeze(-1).float()
                d = F.normalize((torch.randn(fixed.shape) * on_real).flatten(1), dim=1).view_as(fixed).requires_grad_()
                with torch.enable_grad():
                    probed = model(inputs_embeds=fixed + self.xi * d, attention_mask=batch.attention_mask).logits
                    (g,) = torch.autograd.grad(kl_divergence(clean, probed.float().log_softmax(-1)), d)
                r = self.epsilon * F.normalize((g * on_real).flatten(1), dim=1).view_as(g)
                adversarial = model(inputs_embeds=embeddings + r, attention_mask=batch.attention_mask).logits
                vat = kl_divergence(clean, adversarial.float().log_softmax(-1))
                loss, terms = loss + self.beta * vat, terms | {"vat": vat.item()}
        return loss, terms


def make_objective(name: str, settings: dict[str, object]) -> Objective:
    settings = {"attribution": "grad_input", **settings} if name.startswith("regex") else settings
    return RegexRaw(**settings) if name == "regex-raw" else get_objective(name, **settings)


def regex_gradients(args: argparse.Namespace) -> None:
    """Each REGEX term's parameter gradient against CE's, at initialisation and after ``--after`` baseline steps.

    On 4 fixed batches of 8 (the training sample's first 32 in the loop's seeded order): per term at
    weight 1, ||grad term|| / ||grad CE|| and cos(grad term, grad CE). ``input_grad raw E`` is the form
    before the fix (w.r.t. the word embeddings), ``input_grad X`` the fixed one (the embedding block's output).
    """
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    train = sentiment_sample("train", 32)
    if args.after:
        model, _, _ = train_student(model=model, tokenizer=tokenizer, train=train, objective=get_objective("baseline"),
                                    task=Task(num_labels=2), epochs=1, lr=3e-4, batch_size=8, warmup_fraction=0.1, seed=0,
                                    device="cpu", max_length=80)
        model.train()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    parameters = [p for p in model.parameters() if p.requires_grad]
    forms = {"input_grad raw E": RegexRaw(alpha=1.0, beta=0.0, gamma=0.0, delta=0.0)}
    forms |= {f"{term} (weight {weight})": Regex(**({"alpha": 0.0, "beta": 0.0, "gamma": 0.0, "delta": 0.0} | {weight: 1.0}),
                                                  attribution="grad_input")
              for term, weight in (("input_grad X", "alpha"), ("vat", "beta"), ("cons", "gamma"), ("att", "delta"))}

    def flat(value):
        grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(parameters, grads)])

    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in forms}
    for b in range(4):
        batch = to_batch([train[i] for i in order[8 * b: 8 * b + 8]], tokenizer, max_length=80)
        with eval_mode(model):
            ce = F.cross_entropy(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, batch.labels)
        g_ce = flat(ce)
        for name, objective in forms.items():
            torch.manual_seed(b)  # the same VAT direction for every form
            loss, terms = objective.loss(model=model, modules={}, batch=batch, logits=None, ce=ce, phase="main", epoch=0)
            g = flat(loss - ce)
            results[name].append((next(iter(terms.values())), (g.norm() / g_ce.norm()).item(),
                                  F.cosine_similarity(g, g_ce, dim=0).item()))
    print(f"after {args.after} baseline epoch(s); mean (min, max) over 4 batches of 8; |d CE| per batch at weight 1")
    print(f"{'term':<26} {'value':>9}  {'|d term| / |d CE|':>22}  {'cos(d term, d CE)':>24}")
    for name, rows in results.items():
        value, ratio, cosine = zip(*rows)
        print(f"{name:<26} {sum(value) / 4:9.2e}  {sum(ratio) / 4:8.2f} ({min(ratio):5.2f}, {max(ratio):5.2f})  "
              f"{sum(cosine) / 4:+8.3f} ({min(cosine):+.2f}, {max(cosine):+.2f})")


def regex_curves(args: argparse.Namespace) -> None:
    """Train each run (conf/profile/regex.yaml's settings) and print its CE per step, mean CE of the last 4 steps,
    the CE of the whole training sample after training (eval mode), validation accuracy, the mean gradient
    norms (before clipping) of CE and of the other terms, and the logged input-gradient term (first -> last)."""
    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train = sentiment_sample("train", 32, seed=args.draw)
    validation = sentiment_sample("validation", 100)
    truth = torch.tensor([e.label for e in validation])
    for spec in args.runs:
        name, settings = parse_run(spec)
        model.load_state_dict(initial)
        model, log, _ = train_student(
            model=model, tokenizer=tokenizer, train=train, objective=make_objective(name, settings), task=Task(num_labels=2),
            epochs=2, lr=3e-4, batch_size=8, warmup_fraction=0.1, seed=0, device="cpu", max_length=80,
        )
        probs = predict_proba(model, tokenizer, [e.words for e in validation], batch_size=64, device="cpu", max_length=80)
        accuracy = (torch.from_numpy(probs).argmax(1) == truth).float().mean().item()
        fitted = predict_proba(model, tokenizer, [e.words for e in train], batch_size=64, device="cpu", max_length=80)
        train_ce = -torch.from_numpy(fitted)[torch.arange(len(train)), [e.label for e in train]].log().mean().item()
        ce = log["ce"].to_list()
        logged = log["input_grad"].drop_nulls() if "input_grad" in log.columns else []  # null in warm-up epochs
        term = f"  L_grad {logged[0]:.2e} -> {logged[-1]:.2e}" if len(logged) else ""
        print(f"{spec:<28} CE per step: {' '.join(f'{v:.3f}' for v in ce)}")
        norms = f"|dCE| {log['grad_norm_ce'].mean():.2f}  |d rest| {log['grad_norm_rest'].mean():.2f} (means over steps)"
        print(f"{'':<28} last-4 CE {sum(ce[-4:]) / 4:.3f}  training-set CE after (eval mode) {train_ce:.3f}  "
              f"validation acc {100 * accuracy:.1f}  {norms}{term}", flush=True)


# ------------------------------------------------------------------------------------------------ eX2L

CATEGORIES = ("books", "dvd", "electronics", "kitchen")
MAJORITY = {"books": 1, "dvd": 1, "electronics": 0, "kitchen": 0}  # conf/profile/ex2l.yaml's skew


def products(split: str, *, per_cell: int | None = None, majority: int = 0, minority: int = 0, seed: int = 0,
             max_words: int | None = None) -> list[Example]:
    """products_amazon reviews with their category: ``per_cell`` per label x category, or ``majority`` /
    ``minority`` per category with its majority / other label (conf/profile/ex2l.yaml's text Waterbirds)."""
    frame = pl.read_parquet(DATA / "sentiment" / "products_amazon" / f"{split}.parquet")
    parts = []
    for category in CATEGORIES:
        for label in (0, 1):
            n = per_cell if per_cell is not None else (majority if MAJORITY[category] == label else minority)
            cell = frame.filter((pl.col("category") == category) & (pl.col("label") == SENTIMENT[label]))
            parts.append(cell.sample(n, seed=seed))
    rows = pl.concat(parts)
    return [Example(text.split()[:max_words], SENTIMENT.index(label), columns={"category": category})
            for text, label, category in rows.select("text", "label", "category").iter_rows()]


def ex2l_truncation(args: argparse.Namespace) -> None:
    """Share of products_amazon reviews (the ex2l profile's only data) whose words the tokenizer cuts at each
    max_length, for whole reviews and for their first ``max_words`` words (train and test, all rows)."""
    _, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    folder = DATA / "sentiment" / "products_amazon"
    frame = pl.concat([pl.read_parquet(folder / f"{split}.parquet") for split in ("train", "test")])
    sentences = [text.split() for text in frame["text"]]
    lengths = [len(ids) for ids in tokenizer([" ".join(w) for w in sentences], add_special_tokens=True)["input_ids"]]
    print(f"{len(sentences)} reviews; tokens per review: median {sorted(lengths)[len(lengths) // 2]}")
    print("max_words  max_length  share truncated  (median, p90 tokens)")
    for max_words in (None, 32, 40, 48):
        cut = [w[:max_words] for w in sentences]
        counts = [len(ids) for ids in tokenizer([" ".join(w) for w in cut])["input_ids"]] if max_words else lengths
        ordered = sorted(counts)
        for max_length in (40, 64, 80, 96, 128):
            share = sum(c > max_length for c in counts) / len(counts)
            print(f"{str(max_words):>9}  {max_length:>10}  {100 * share:14.1f} %  "
                  f"({ordered[len(ordered) // 2]}, {ordered[int(0.9 * len(ordered))]})")


def ex2l_maps(args: argparse.Namespace) -> None:
    """Share of all-zero Grad-CAM maps (label head, gold label; confounder head, the review's category) on a
    real batch: 64 products test reviews, 8 per label x category, at each layer; then, with ``--train``,
    the same after training eX2L with the given settings on the ex2l profile's skewed pool (54 / 6 per
    category, batch 16, 2 epochs, lr 3e-4), with its per-step Dice and empty-map share and its test accuracy."""
    from pipeline.attribution.gradcam import empty_maps, hidden_and_pooled, sequence_head, text_grad_cam
    from pipeline.training.objectives.ex2l import Ex2l
    from pipeline.training.training import set_seed

    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    task = Task(num_labels=2, column_values={"category": CATEGORIES})
    batch_examples = products("test", per_cell=8, seed=1, max_words=args.max_words)
    batch = to_batch(batch_examples, tokenizer, max_length=args.max_length,
                     columns={"category": torch.tensor([CATEGORIES.index(e.columns["category"]) for e in batch_examples])})
    set_seed(0)
    head = Ex2l().modules(model=model, task=task)["confounder"].module

    def shares(model, head, layers=(-1, -2, -3)) -> str:
        real = batch.word_index >= 0
        out = []
        with eval_mode(model):
            for layer in layers:
                hidden, pooled = hidden_and_pooled(model, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                                   layer=layer)
                empty = [
                    empty_maps(text_grad_cam(hidden=hidden, scores=scores, target=target, attention_mask=batch.attention_mask,
                                             real=real, create_graph=False), real=real).float().mean().item()
                    for scores, target in ((sequence_head(model).out(pooled), batch.labels),
                                           (head(pooled), batch.columns["category"]))
                ]
                out.append(f"layer {layer}: label {100 * empty[0]:5.1f} %, confounder {100 * empty[1]:5.1f} %")
        return "; ".join(out)

    print(f"all-zero maps at initialisation (max_length {args.max_length}, max_words {args.max_words}): {shares(model, head)}")
    if not args.train:
        return
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train = products("train", majority=54, minority=6, seed=0, max_words=args.max_words)
    test = products("test", per_cell=30, seed=0, max_words=args.max_words)
    truth = torch.tensor([e.label for e in test])
    for spec in args.train:
        name, settings = parse_run(spec)
        model.load_state_dict(initial)
        model, log, modules = train_student(
            model=model, tokenizer=tokenizer, train=train, objective=make_objective(name, settings), task=task, epochs=2,
            lr=3e-4, batch_size=16, warmup_fraction=0.1, seed=0, device="cpu", max_length=args.max_length,
        )
        probs = predict_proba(model, tokenizer, [e.words for e in test], batch_size=64, device="cpu",
                              max_length=args.max_length)
        correct = (torch.from_numpy(probs).argmax(1) == truth).float()
        groups = correct.view(8, 30).mean(1)  # the cells in products()'s order
        print(f"{spec}: test acc {100 * correct.mean():.1f}, worst cell {100 * groups.min():.1f}; "
              f"CE {log['ce'][0]:.3f} -> {sum(log['ce'][-4:]) / 4:.3f} (last 4)")
        if "dice" in log.columns:
            print(f"  per step: dice {' '.join(f'{v:.2f}' for v in log['dice'])}")
        if "empty_maps" in log.columns:
            print(f"  per step: empty maps {' '.join(f'{v:.2f}' for v in log['empty_maps'])}")
        print(f"  after training: {shares(model, modules.get('confounder', head))}", flush=True)


# ----------------------------------------------------------------------------------------------- ALIGN


class OldMasker(torch.nn.Module):
    """ALIGN's masker before issue 22's fix: a sigmoid over three convolutions of the raw word embeddings."""

    def __init__(self, *, embedding_dim: int, width: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(embedding_dim, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv1d(width, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv1d(width, 1, 3, padding=1),
        )

    def forward(self, embeds, *, attention_mask, real):
        inputs = (embeds * attention_mask.unsqueeze(-1).to(embeds.dtype)).transpose(1, 2)
        soft = torch.sigmoid(self.net(inputs).squeeze(1))
        return torch.where(real, soft, torch.ones_like(soft))


def old_align():
    """ALIGN before the fix: the old masker, L_M = contrast + lambda1 mean_R M + lambda2 TV from the end of the
    warm-up (the masker idle before), Grad-CAM on the last layer."""
    from pipeline.training.objectives.align import Align, contrast, sparsity, total_variation, word_embeddings
    from pipeline.training.objectives.base import ExtraModule, Phase

    @dataclasses.dataclass(frozen=True)
    class OldAlign(Align):
        lambda1: float = 0.2
        layer: int = -1

        @property
        def phases(self):
            return Phase("masker", updates=("masker",), start_epoch=self.warmup_epochs), Phase("classifier")

        def modules(self, *, model, task):
            return {"masker": ExtraModule(OldMasker(embedding_dim=model.get_input_embeddings().embedding_dim),
                                          lr=self.masker_lr)}

        def _masker_loss(self, *, model, masker, batch, pretrain):
            real = batch.word_index >= 0
            embeds, baseline = (e.detach() for e in word_embeddings(model, input_ids=batch.input_ids,
                                                                    word_index=batch.word_index))
            mask = masker(embeds, attention_mask=batch.attention_mask, real=real)
            with eval_mode(model):
                gap = contrast(model, embeds=embeds, baseline=baseline, mask=mask, attention_mask=batch.attention_mask,
                               labels=batch.labels)
            loss = gap + self.lambda1 * sparsity(mask, real=real) + self.lambda2 * total_variation(mask, real=real)
            return loss, {"masker_contrast": gap.item()}

    return OldAlign()


def mask_contrast(model, *, embeds, baseline, mask, batch) -> float:
    """mean_b f_y(x ⊙ M) - f_y(x ⊙ (1 - M)), the classifier in eval mode."""
    from pipeline.training.objectives.align import masked_embeddings

    with eval_mode(model):
        probs = [model(inputs_embeds=masked_embeddings(embeds=embeds, baseline=baseline, mask=m),
                       attention_mask=batch.attention_mask).logits.softmax(-1).gather(1, batch.labels.unsqueeze(1))
                 for m in (mask, 1 - mask)]
    return (probs[0] - probs[1]).mean().item()


def align_mask(args: argparse.Namespace) -> None:
    """Train ALIGN (profiles/align.yaml's settings on a 64-per-label SST-2 sample: batch 16, 3 epochs, the first a
    warm-up, lr 3e-4, max_length 40) before (``old``) and after the fix (``align[:settings]``); print the logged mask
    mean and spread per step, then on 64 held-out validation sentences: the mask's mean, its per-sentence spread,
    the contrast f_y(x ⊙ M) - f_y(x ⊙ (1 - M)) against the same mask shuffled within each sentence, and accuracy."""
    from pipeline.training.objectives.align import sparsity, spread, word_embeddings

    model, tokenizer = load_student("all-minilm-l6-v2", num_labels=2, seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train = sentiment_sample("train", 64, seed=args.draw)
    held_out = sentiment_sample("validation", 32, seed=1)
    batch = to_batch(held_out, tokenizer, max_length=40)
    real = batch.word_index >= 0
    for spec in args.runs:
        name, settings = parse_run(spec)
        objective = old_align() if name == "old" else get_objective(name, **settings)
        model.load_state_dict(initial)
        model, log, modules = train_student(
            model=model, tokenizer=tokenizer, train=train, objective=objective, task=Task(num_labels=2), epochs=3,
            lr=3e-4, batch_size=16, warmup_fraction=0.1, seed=0, device="cpu", max_length=40,
        )
        print(f"{spec}: logged mask_mean per step {' '.join(f'{v:.2f}' for v in log['mask_mean'])}")
        if "mask_spread" in log.columns:
            print(f"  logged mask_spread per step {' '.join(f'{v:.2f}' for v in log['mask_spread'])}")
        with torch.no_grad():
            embeds, baseline = word_embeddings(model, input_ids=batch.input_ids, word_index=batch.word_index)
            mask = modules["masker"](embeds, attention_mask=batch.attention_mask, real=real)
            shuffled = mask.clone()  # the same values, each sentence's real tokens permuted
            for b in range(len(mask)):
                positions = real[b].nonzero().squeeze(1)
                permutation = torch.randperm(len(positions), generator=torch.Generator().manual_seed(b))
                shuffled[b, positions] = mask[b, positions[permutation]]
            gaps = [mask_contrast(model, embeds=embeds, baseline=baseline, mask=m, batch=batch) for m in (mask, shuffled)]
            accuracy = (model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.argmax(1)
                        == batch.labels).float().mean().item()
        print(f"  held out: mask mean {sparsity(mask, real=real):.3f}, per-sentence spread {spread(mask, real=real):.3f}, "
              f"contrast {gaps[0]:+.3f} (shuffled mask {gaps[1]:+.3f}), accuracy {100 * accuracy:.1f}", flush=True)


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gradients = commands.add_parser("regex-gradients")
    gradients.add_argument("--after", type=int, default=0, help="baseline epochs (8 steps each) before measuring")
    gradients.set_defaults(run=regex_gradients)
    curves = commands.add_parser("regex-curves")
    curves.add_argument("runs", nargs="+", help="name[:key=value,...]; name = an objective or regex-raw")
    curves.add_argument("--draw", type=int, default=0, help="seed of the training sample")
    curves.set_defaults(run=regex_curves)
    commands.add_parser("ex2l-truncation").set_defaults(run=ex2l_truncation)
    maps = commands.add_parser("ex2l-maps")
    maps.add_argument("--max-length", type=int, default=40)
    maps.add_argument("--max-words", type=int, default=None)
    maps.add_argument("--train", nargs="*", default=[], help="runs to train, name[:key=value,...]")
    maps.set_defaults(run=ex2l_maps)
    align = commands.add_parser("align-mask")
    align.add_argument("runs", nargs="+", help="old (before the fix) or align[:key=value,...]")
    align.add_argument("--draw", type=int, default=0, help="seed of the training sample")
    align.set_defaults(run=align_mask)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
