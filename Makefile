# paperstack: one way to set up, test and run every paper.
#   make test        set up (installs uv through pip if missing) and run all tests
#   make reproduce   run every project's default experiment; report in runs/report.md
# Per paper: make test-<project>, make reproduce-<project>, make bench-<project>.
# SCALE=smoke|cpu|paper picks the experiment scale (default smoke).

PYTHON ?= python3
SCALE ?= smoke
PYTEST_WORKERS ?= 2
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --no-sync
export UV
# Python must be free to cache bytecode: without it every test worker and command
# recompiles torch, transformers and trl on import (tens of seconds each).
unexport PYTHONDONTWRITEBYTECODE
PROJECTS := $(patsubst projects/%/pyproject.toml,%,$(wildcard projects/*/pyproject.toml))

.PHONY: help setup test test-slow lint format bench reproduce clean \
	$(addprefix test-,$(PROJECTS)) $(addprefix reproduce-,$(PROJECTS)) \
	$(addprefix bench-,$(PROJECTS))

help:
	@sed -n '1,6p' Makefile
	@echo "projects: $(PROJECTS)"

## setup: install uv if missing, then the locked environment (all projects, dev tools)
setup:
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found: installing it with pip"; \
		$(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --all-packages

## test: every test except those marked slow (workspace, shared, all projects)
test: setup
	$(RUN) pytest -n $(PYTEST_WORKERS) -m "not slow" tests shared/tests \
		$(foreach p,$(PROJECTS),projects/$(p)/tests)

test-slow: setup
	$(RUN) pytest -n $(PYTEST_WORKERS) -m slow tests shared/tests \
		$(foreach p,$(PROJECTS),projects/$(p)/tests)

$(addprefix test-,$(PROJECTS)): test-%: setup
	$(RUN) pytest -n $(PYTEST_WORKERS) -m "not slow" projects/$*/tests

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

## bench: speed and memory benchmarks, side by side with each project's peer
bench: setup
	$(UV) sync --frozen --all-packages --group bench
	$(UV) run --no-sync shared bench
	@for p in $(PROJECTS); do $(UV) run --no-sync $$p bench || exit 1; done

$(addprefix bench-,$(PROJECTS)): bench-%: setup
	$(UV) sync --frozen --all-packages --group bench
	$(UV) run --no-sync $* bench

## reproduce: the data and metric self-checks, every project at SCALE, then one report.
## A project whose checks fail (exit 1) or that crashes does not stop the others; the
## report is written either way, and the target fails at the end naming them.
reproduce: setup
	$(RUN) shared selfcheck
	@failed=""; for p in $(PROJECTS); do \
		$(RUN) $$p reproduce --config projects/$$p/configs/$(SCALE).yaml || failed="$$failed $$p"; \
	done; \
	$(RUN) shared report --scale $(SCALE); \
	if [ -n "$$failed" ]; then echo "reproduce failed or its checks failed in:$$failed"; exit 1; fi

$(addprefix reproduce-,$(PROJECTS)): reproduce-%: setup
	$(RUN) $* reproduce --config projects/$*/configs/$(SCALE).yaml

clean:
	rm -rf runs .pytest_cache .ruff_cache
