"""A randomly initialised RoBERTa student without downloads, and one training step of any registered objective.

The paper's student is ``roberta-base``; tests here build its architecture from a ``RobertaConfig``
(tiny on CPU, the real shape on CUDA) with a byte-level BPE tokenizer trained on the test's own
sentences (RoBERTa's special tokens <s> 0, <pad> 1, </s> 2 and post-processor), so the sibling
heads (eX2L, ALIGN) meet RoBERTa's classification head, which has no pooler on the base model.
Shared by tests/pipeline/training/objectives/test_roberta.py (CPU) and tests/gpu/test_gpu_objectives.py (CUDA).
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

from pipeline.training.objectives import OBJECTIVES, get_objective
from pipeline.training.objectives.base import Task
from pipeline.training.training import Example, train_student

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # roberta-base's ids 0-3; <mask> is 50264 there, 4 here
CATEGORIES = ("books", "kitchen")
TASK = Task(num_labels=2, column_values={"category": CATEGORIES})
# settings that make every term run in the one step: ALIGN's Grad-CAM alignment starts after its warm-up
SETTINGS: dict[str, dict[str, object]] = {"align": {"warmup_epochs": 0}, "align-fixed": {"warmup_epochs": 0}}
_WORDS = ("the battery died after a week and the charger is useless , "
          "this novel was a joy to read from the first page to the last ! "
          "an awful pan : everything sticks to it and it scratched at once . "
          "the plot is thin but the characters are wonderful and warm").split()


def sentences(n: int, *, seed: int = 0) -> list[Example]:
    """``n`` labelled sentences of 6-12 words drawn from a small product-review vocabulary.

    Args:
        n: how many.
        seed: the draw's seed.

    Returns:
        Examples with a label (alternating), a random positive prior per word and a ``category`` column.
    """
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        words = [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(6, 13)))]
        examples.append(Example(words, i % 2, prior=rng.random(len(words)), columns={"category": CATEGORIES[i // 2 % 2]}))
    return examples


def roberta_tokenizer(examples: list[Example], *, vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A RoBERTa-style byte-level BPE tokenizer trained on the examples' sentences (no download).

    Args:
        examples: the sentences it will tokenise.
        vocab_size: merges stop at this vocabulary size (special tokens included).

    Returns:
        A fast tokenizer adding <s> ... </s> and padding with <pad> (id 1), as roberta-base does.
    """
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([" ".join(e.words) for e in examples], trainer=trainer)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def roberta_student(config: RobertaConfig, *, device: str, seed: int = 0) -> RobertaForSequenceClassification:
    """A randomly initialised RoBERTa classifier of ``config`` (TASK's 2 labels), eager attention as ``load_student``.

    Args:
        config: the shape (``RobertaConfig()`` is roberta-base's).
        device: where it lives.
        seed: torch's seed for the initial weights.

    Returns:
        The model in train mode.
    """
    config.num_labels = TASK.num_labels
    torch.manual_seed(seed)
    # eager: the guided and sibling losses back-propagate through attributions (double backward)
    model = RobertaForSequenceClassification._from_config(config, attn_implementation="eager")
    return model.to(device).train()


def train_one_step(name: str, *, model, tokenizer, examples: list[Example], device: str):
    """One step of the registered objective ``name`` through the training loop, on one batch of all ``examples``.

    Args:
        name: a key of ``pipeline.training.objectives.OBJECTIVES``.
        model: the student (trained in place: restore its weights between objectives).
        tokenizer: its fast tokenizer.
        examples: the batch.
        device: "cpu" or "cuda" (bf16 autocast on CUDA, as in every run).

    Returns:
        (log, modules): the loop's one-row log and the objective's extra modules.
    """
    objective = get_objective(name, **SETTINGS.get(name, {}))
    _, log, modules = train_student(model=model, tokenizer=tokenizer, train=examples, objective=objective, task=TASK,
                                    epochs=1, lr=1e-4, batch_size=len(examples), warmup_fraction=0.0, seed=0,
                                    device=device, max_length=32)
    return log, modules


OBJECTIVE_NAMES = sorted(OBJECTIVES)
