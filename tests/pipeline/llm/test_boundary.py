"""The prompt boundary: scoring prefix, suffix and target separately scores exactly the joined text."""

import polars as pl
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.data.fewshot import k_shot
from pipeline.data.perturb import perturbations
from pipeline.llm.base import ScoringError, encode_queries
from pipeline.params import PriorsParams
from pipeline.prompts import PromptTemplate, build_query, split_prompt

CAP = PromptTemplate(
    user="Classify the customer message into one of these intents:\n{labels}\n\n"
    "Answer with the intent only.\nMessage: {sentence}",
    answer_prefix="Intent:",
)
LIME = PromptTemplate(user="Message: {sentence}", answer_prefix="Intent:")
LLAMA3_CHAT = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module")
def byte_bpe(shared_data) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Llama-3 / GPT-2 style, special tokens, chat template) trained offline on Banking77."""
    texts = pl.read_parquet(shared_data / "banking77" / "train.parquet")["text"].to_list()
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_CHAT)


@pytest.fixture(scope="module")
def workload(shared_data) -> tuple[list[str], pl.DataFrame, pl.DataFrame]:
    """A real Banking77 scoring workload: one sentence per label (77), their CAP and LIME masks."""
    labels = (shared_data / "banking77" / "labels.txt").read_text().split()
    train = pl.read_parquet(shared_data / "banking77" / "train.parquet").with_row_index("row")
    sentences = k_shot(train.select(pl.format("train-{}", "row").alias("id"), "text", "label"), k=1, seed=0)
    return labels, sentences, perturbations(sentences, params=PriorsParams(cap={"n": 12}, lime={"n": 12}))


def _queries(workload, tokenizer, source: str) -> tuple[str, list[tuple[str, str]]]:
    labels, sentences, masks = workload
    prefix, suffix_template = split_prompt({"cap": CAP, "lime": LIME}[source], tokenizer=tokenizer, labels=labels)
    words = dict(zip(sentences["id"], (t.split() for t in sentences["text"])))
    rows = masks.filter(pl.col("source") == source).join(sentences.select("id", "label"), on="id")
    queries = [build_query(suffix_template, sentence=" ".join(w for w, keep in zip(words[i], m) if keep), label=label)
               for i, m, label in rows.select("id", "mask", "label").iter_rows()]
    return prefix, queries


@pytest.mark.parametrize("source", ["cap", "lime"])
@pytest.mark.parametrize("which", ["smollm2", "byte_bpe"])
def test_separate_ids_equal_joined_ids_for_every_query(workload, smollm, byte_bpe, which, source):
    tokenizer = smollm.tokenizer if which == "smollm2" else byte_bpe
    prefix, queries = _queries(workload, tokenizer, source)
    assert prefix.endswith("Message: ") and len(queries) >= 77 * 12
    prefix_ids, encoded = encode_queries(tokenizer, prefix=prefix, queries=queries, max_length=100_000)
    joined = tokenizer([prefix + s + t for s, t in queries], add_special_tokens=False)["input_ids"]
    assert [prefix_ids + s + t for s, t in encoded] == joined
    # the old split (the prefix with its trailing space tokenised alone) scored other ids
    alone = tokenizer([prefix], add_special_tokens=False)["input_ids"][0]
    assert alone != prefix_ids and alone[-1] not in joined[0][: len(alone)]


def test_a_template_gluing_a_word_to_the_sentence_is_refused(smollm):
    prefix, suffix_template = split_prompt(PromptTemplate(user="Message: card{sentence}", answer_prefix="Intent:"),
                                           tokenizer=smollm.tokenizer, labels=["card_arrival"])
    queries = [build_query(suffix_template, sentence=s, label="card_arrival") for s in (" is late", "s never arrived")]
    with pytest.raises(ScoringError, match=r"query 1: the tokenizer merges tokens .*'s never arrived"):
        encode_queries(smollm.tokenizer, prefix=prefix, queries=queries, max_length=2048)
