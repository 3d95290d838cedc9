import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from pipeline.llm.base import ScoringError
from pipeline.llm.factory import make_scorer
from pipeline.llm.openai_backend import OpenAIScorer
from pipeline.prompts import ADD_TEMPLATE, LIME_TEMPLATE, build_query, split_prompt

MODEL = "smollm2-135m-instruct"


def _completion(model, tokenizer, prompts: list[list[int]]) -> dict:
    """A vLLM-shaped /v1/completions answer for echo=True, logprobs=1, max_tokens=1, computed by the real model."""
    choices = []
    for index, ids in enumerate(prompts):
        with torch.inference_mode():
            logprobs = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        generated = int(logprobs[-1].argmax())
        tokens = [*ids, generated]
        token_logprobs = [None] + [float(logprobs[j - 1, tokens[j]]) for j in range(1, len(tokens))]
        text = [tokenizer.decode([t]) for t in tokens]
        offsets = np.cumsum([0] + [len(t) for t in text[:-1]]).tolist()
        choices.append({
            "index": index, "text": "".join(text), "finish_reason": "length", "stop_reason": None,
            "logprobs": {"text_offset": offsets, "token_logprobs": token_logprobs, "tokens": text,
                         "top_logprobs": [None] + [{text[j]: token_logprobs[j]} for j in range(1, len(tokens))]},
        })
    usage = {"prompt_tokens": sum(map(len, prompts)), "completion_tokens": len(prompts)}
    # vLLM answers in prompt order; reversed here so the client must sort by index
    return {
        "id": "cmpl-test", "object": "text_completion", "created": 0, "model": MODEL, "choices": choices[::-1], "usage": usage
    }


def _next_token(model, prompts: list[list[int]], token_ids: list[int] | None) -> dict:
    """A vLLM-shaped answer for max_tokens=1, logprobs=1, return_tokens_as_token_ids: the sampled token's
    log-prob and, for each of ``token_ids`` (None: a server without logprob_token_ids), its own."""
    choices = []
    for index, ids in enumerate(prompts):
        with torch.inference_mode():
            logprobs = model(input_ids=torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
        generated = int(logprobs.argmax())
        top = {f"token_id:{t}": float(logprobs[t]) for t in [generated, *(token_ids or [])]}
        choices.append({
            "index": index, "text": f"token_id:{generated}", "finish_reason": "length", "stop_reason": None,
            "logprobs": {"text_offset": [0], "token_logprobs": [float(logprobs[generated])],
                         "tokens": [f"token_id:{generated}"], "top_logprobs": [top]},
        })
    return {"id": "cmpl-test", "object": "text_completion", "created": 0, "model": MODEL, "choices": choices[::-1]}


def _generation(model, tokenizer, prompts: list[list[int]], max_tokens: int) -> dict:
    """A vLLM-shaped /v1/completions answer for temperature=0 generation: a plain greedy loop on the real model."""
    choices = []
    for index, ids in enumerate(prompts):
        tokens = list(ids)
        with torch.inference_mode():
            for _ in range(max_tokens):
                tokens.append(int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
                if tokens[-1] == tokenizer.eos_token_id:
                    break
        text = tokenizer.decode(tokens[len(ids):], skip_special_tokens=True)
        choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": "stop", "stop_reason": None})
    return {"id": "cmpl-test", "object": "text_completion", "created": 0, "model": MODEL, "choices": choices[::-1]}


class FakeVllm:
    """A local /v1/completions server on a free port (echoed prompt log-probs, next-token log-probs, or
    greedy generation); fails the first ``failures`` requests with ``status``; ``token_ids=False``
    ignores ``logprob_token_ids`` as servers without it do; after ``kill_after`` answers it dies like a
    crashed server: the next request gets no answer and the port refuses connections."""

    def __init__(self, smollm, *, failures: int = 0, status: int = 503, token_ids: bool = True,
                 kill_after: int | None = None):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if kill_after is not None and len(outer.requests) > kill_after:
                    outer.kill()
                    return  # the connection closes unanswered
                if self.path != "/v1/completions" or len(outer.requests) <= failures:
                    code, payload = (404 if self.path != "/v1/completions" else status), {"error": "unavailable"}
                elif body.get("echo"):
                    code, payload = 200, _completion(smollm._model, smollm.tokenizer, body["prompt"])
                elif body.get("logprobs"):
                    ids = body.get("logprob_token_ids") if token_ids else None
                    code, payload = 200, _next_token(smollm._model, body["prompt"], ids)
                else:
                    code, payload = 200, _generation(smollm._model, smollm.tokenizer, body["prompt"], body["max_tokens"])
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def prompt(smollm, banking):
    labels, frame = banking
    prefix, suffix_template = split_prompt(LIME_TEMPLATE, tokenizer=smollm.tokenizer, labels=labels)
    rows = frame.head(5).select("text", "label").iter_rows()
    queries = [build_query(suffix_template, sentence=text, label=label) for text, label in rows]
    return prefix, queries + [build_query(suffix_template, sentence="", label="card_arrival")]


def test_prompt_logprobs_scores_match_the_local_reference(smollm, prompt):
    prefix, queries = prompt
    with FakeVllm(smollm) as server:
        scorer = make_scorer(backend="openai", model=MODEL, base_url=server.url + "/", batch_size=4,
                             vllm_mode="prompt_logprobs")
        scores = scorer.score(prefix=prefix, queries=queries, progress=False)
    np.testing.assert_allclose(scores, smollm.score_naive(prefix=prefix, queries=queries, progress=False), rtol=0, atol=1e-5)
    assert [len(r["prompt"]) for r in server.requests] == [4, 2]
    first = server.requests[0]
    assert (first["model"], first["echo"], first["logprobs"], first["max_tokens"]) == (MODEL, True, 1, 1)
    prefix_ids = smollm.tokenizer(prefix.rstrip(), add_special_tokens=False)["input_ids"]  # its trailing space leads each suffix
    assert all(p[: len(prefix_ids)] == prefix_ids for p in first["prompt"])
    assert scorer.identity == f"openai:{MODEL}"


def test_next_token_scores_match_the_local_reference(smollm, prompt):
    prefix, queries = prompt
    with FakeVllm(smollm) as server:
        scorer = make_scorer(backend="openai", model=MODEL, base_url=server.url, batch_size=4)
        scores = scorer.score(prefix=prefix, queries=queries, progress=False)
    np.testing.assert_allclose(scores, smollm.score_naive(prefix=prefix, queries=queries, progress=False), rtol=0, atol=1e-5)
    prefix_ids, encoded = scorer.encode(prefix=prefix, queries=queries)
    warm_up, *requests = server.requests
    assert (warm_up["prompt"], warm_up["max_tokens"], "logprob_token_ids" in warm_up) == ([prefix_ids], 1, False)
    # one prompt per target token (prefix + suffix + the target's earlier tokens); a request per next token
    asked = sorted((tuple(p), r["logprob_token_ids"][0]) for r in requests for p in r["prompt"])
    expected = sorted((tuple(prefix_ids + s + t[:j]), t[j]) for s, t in encoded for j in range(len(t)))
    assert asked == expected
    assert all(len(set(r["logprob_token_ids"])) == 1 and r["return_tokens_as_token_ids"] for r in requests)


def test_a_server_without_logprob_token_ids_says_to_use_prompt_logprobs(smollm, prompt):
    prefix, queries = prompt
    with FakeVllm(smollm, token_ids=False) as server:
        scorer = OpenAIScorer(model=MODEL, base_url=server.url)
        with pytest.raises(ScoringError, match="must support logprob_token_ids .* scoring.vllm_mode: prompt_logprobs"):
            scorer.score(prefix=prefix, queries=queries[:1], progress=False)


def test_server_errors_are_retried(smollm, prompt):
    prefix, queries = prompt
    with FakeVllm(smollm, failures=2, status=503) as server:
        scorer = OpenAIScorer(model=MODEL, base_url=server.url, batch_size=8, retries=2, backoff=0.01,
                              mode="prompt_logprobs")
        scores = scorer.score(prefix=prefix, queries=queries[:2], progress=False)
    assert len(server.requests) == 3
    np.testing.assert_allclose(scores, smollm.score_naive(prefix=prefix, queries=queries[:2], progress=False), atol=1e-5)


def test_persistent_5xx_and_4xx_give_one_clear_error(smollm, prompt):
    prefix, queries = prompt
    with FakeVllm(smollm, failures=99, status=500) as server:
        scorer = OpenAIScorer(model=MODEL, base_url=server.url, retries=2, backoff=0.01)
        with pytest.raises(ScoringError, match=rf"{server.url}/v1/completions: no answer after 3 attempts \(last: HTTP 500"):
            scorer.score(prefix=prefix, queries=queries[:1], progress=False)
        assert len(server.requests) == 3
    with FakeVllm(smollm, failures=99, status=400) as server:
        scorer = OpenAIScorer(model=MODEL, base_url=server.url, retries=2, backoff=0.01)
        with pytest.raises(ScoringError, match=rf"{server.url}/v1/completions: HTTP 400"):
            scorer.score(prefix=prefix, queries=queries[:1], progress=False)
        assert len(server.requests) == 1


def test_unreachable_server_fails_fast_naming_the_url(prompt):
    prefix, queries = prompt
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    scorer = OpenAIScorer(model=MODEL, base_url=url, retries=2, backoff=0.05, timeout=2)
    start = time.perf_counter()
    with pytest.raises(ScoringError, match=rf"{url}/v1/completions: no answer after 3 attempts \(last: ConnectError"):
        scorer.score(prefix=prefix, queries=queries[:1], progress=False)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("mode", ["prompt_logprobs", "next_token"])
def test_replicas_share_the_batches_and_one_killed_mid_run_changes_no_score(smollm, prompt, mode):
    prefix, queries = prompt
    queries = queries * 3  # 18 one-query batches, so both servers are busy when one dies
    with FakeVllm(smollm) as single:
        scorer = OpenAIScorer(model=MODEL, base_url=single.url, batch_size=1, mode=mode)
        expected = scorer.score(prefix=prefix, queries=queries, progress=False)
    with FakeVllm(smollm, kill_after=2) as doomed, FakeVllm(smollm) as survivor:
        scorer = OpenAIScorer(model=MODEL, base_url=[doomed.url, survivor.url], batch_size=1, retries=1, backoff=0.01,
                              mode=mode)
        scores = scorer.score(prefix=prefix, queries=queries, progress=False)
    np.testing.assert_array_equal(scores, expected)  # every query, in query order
    assert len(doomed.requests) == 3  # two answered, the third lost with the server and its batch rescored
    if mode == "prompt_logprobs":  # one request per one-query batch
        assert len(survivor.requests) == len(queries) - 2


def test_when_every_replica_is_lost_the_error_names_each(prompt):
    prefix, queries = prompt
    urls = []
    for _ in range(2):
        with socket.socket() as probe:  # ports nobody listens on
            probe.bind(("127.0.0.1", 0))
            urls.append(f"http://127.0.0.1:{probe.getsockname()[1]}")
    scorer = OpenAIScorer(model=MODEL, base_url=urls, retries=0, timeout=2)
    with pytest.raises(ScoringError) as failure:
        scorer.score(prefix=prefix, queries=queries[:1], progress=False)
    lost = sorted(str(failure.value).split("; "))
    assert [line.split(": no answer after 1 attempts")[0] for line in lost] == sorted(f"{url}/v1/completions" for url in urls)


def test_generation_matches_the_local_model(smollm, banking):
    _, frame = banking
    prompts = [ADD_TEMPLATE.render(smollm.tokenizer, sentence=text, keywords=["fee"], source_keywords=[], label="card_arrival",
                                   target="transfer_fee_charged") for text in frame["text"][:3]]
    with FakeVllm(smollm) as server:
        scorer = OpenAIScorer(model=MODEL, base_url=server.url, batch_size=2)
        texts = scorer.generate(prompts=prompts, max_new_tokens=10, progress=False)
    assert texts == smollm.generate(prompts=prompts, max_new_tokens=10, progress=False)
    assert [len(r["prompt"]) for r in server.requests] == [2, 1]
    assert (server.requests[0]["temperature"], server.requests[0]["max_tokens"]) == (0.0, 10)
