# mia_bench: every target installs what it needs on first use (.venv, torch 2.13.0 first, then the rest).
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
CLI     := $(VENV)/bin/mia-bench
STAMP   := $(VENV)/.mia_bench-installed

SUITE   ?= digits
DEFENSE ?= megan
SEED    ?= 0
SEEDS   ?=
DEFENSES ?= all
POINTS  ?=
EXECUTOR ?= local
PARALLEL ?= $(shell nproc 2>/dev/null || echo 1)
WANDB   ?= offline
ARGS    ?=
SWEEP   ?=
OP      ?=
RESULTS ?= results
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install bench audit grid leaderboard list test test-slow lint perf clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,ctgan]'  # ctgan: the tested CTGAN audit example
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing the inception extra (torch-fidelity)"; \
		$(PIP) install -q -c constraints.txt -e '.[inception]'; \
	fi
	$(PY) scripts/check_env.py
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install mia_bench into it

bench: $(STAMP) ## train, attack, score one defense and update the leaderboard: make bench DEFENSE=megan [SWEEP=1 | OP=lh3] [SUITE= SEED= ARGS="k=v ..."]
	$(CLI) run --suite $(SUITE) --defense $(DEFENSE) --seed $(SEED) $(if $(SWEEP),--sweep,) $(if $(OP),--op $(OP),) \
		--results-dir $(RESULTS) --wandb $(WANDB) $(ARGS)
	$(CLI) leaderboard --results-dir $(RESULTS)

audit: $(STAMP) ## run the controls and check every attack against them (exit 1 on a failed check): make audit [SUITE= SEEDS= ARGS=]
	$(CLI) audit --suite $(SUITE) --seed $(or $(SEEDS),0 1 2) --results-dir $(RESULTS) $(ARGS)

grid: $(STAMP) ## the suite's published grid (POINTS=all: every operating point) x seed, skipping finished cells, then the leaderboard: make grid [SUITE= SEEDS= (default: the suite's seeds) DEFENSES= POINTS=published|all|default EXECUTOR=local|slurm PARALLEL= WANDB=offline|online|off ARGS=]
	$(CLI) grid --suite $(SUITE) --defenses $(DEFENSES) $(if $(SEEDS),--seeds $(SEEDS),) $(if $(POINTS),--points $(POINTS),) --executor $(EXECUTOR) --parallel $(PARALLEL) \
		--results-dir $(RESULTS) --wandb $(WANDB) $(ARGS)

leaderboard: $(STAMP) ## fold results/ into leaderboard/entries and regenerate leaderboard/LEADERBOARD.md
	$(CLI) leaderboard --results-dir $(RESULTS)

list: $(STAMP) ## registered datasets, defenses, attacks and metrics
	$(CLI) list

test: $(STAMP) ## the test suite CI runs (skips tests marked slow or gpu)
	$(PY) scripts/check_env.py
	$(PY) -m pytest -m "not slow and not gpu" -q --durations=12 $(PYTEST_ARGS)

test-slow: $(STAMP) ## the long checks (marked slow)
	$(PY) -m pytest -m "slow and not gpu" -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check mia_bench tests benchmarks scripts
	$(VENV)/bin/mypy mia_bench

perf: $(STAMP) ## speed benchmarks (print ratios)
	@for f in benchmarks/perf/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean: ## remove Python and tool caches; never results/ (runs, checkpoints) nor the venv
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .mypy_cache
