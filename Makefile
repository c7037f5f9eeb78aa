# The two commands (docs/SPEC.md §7): `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt requirements/constraints.txt pyproject.toml */pyproject.toml | cksum | cut -d' ' -f1)
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

ORCHESTRATE_STAMP := $(VENV)/.orchestrate-$(shell cat requirements/orchestrate.txt requirements/orchestrate-constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install install-orchestrate demo test test-fast lint typecheck docs lock bench soak clean

$(STAMP): requirements-dev.txt requirements/constraints.txt pyproject.toml */pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The optional Dagster code location (orchestrate/dagster/): Dagster into the same .venv, pinned.
$(ORCHESTRATE_STAMP): $(STAMP) requirements/orchestrate.txt requirements/orchestrate-constraints.txt
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -c requirements/orchestrate-constraints.txt -r requirements/orchestrate.txt
	rm -f $(VENV)/.orchestrate-*
	touch $(ORCHESTRATE_STAMP)

install-orchestrate: $(ORCHESTRATE_STAMP)

demo: install
	$(BIN)/python -m emulators.demo

# ruff, then mypy on the three packages ([tool.mypy] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite, including the orchestrated (Dagster + PostgreSQL) end-to-end test, in TEST_WORKERS
# processes (pytest-xdist; docs/development.md "The test suite").
TEST_WORKERS ?= 2
test: install install-orchestrate lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# Everything but the tests that run Meltano (marked e2e), in 4 processes: the loop while changing code.
test-fast: install
	$(BIN)/python -m pytest -m "not e2e" -n 4

# mypy alone.
typecheck: install
	$(BIN)/mypy

# README's settings tables, meltano.yml's settings and .env.example, from each plugin's --about.
docs: install
	$(BIN)/python docs/settings.py

# Pin what is installed now (after changing a requirement): requirements/constraints.txt, then the
# workspace's uv.lock at the same versions (tests/ops/test_packaging.py checks that they agree).
lock: install
	{ sed -n '1,2p' requirements/constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^#'; } > requirements/constraints.tmp
	mv requirements/constraints.tmp requirements/constraints.txt
	$(BIN)/uv lock --quiet $$(sed -n 's/^\([A-Za-z0-9_.-]*==[^ ;]*\).*/-P \1/p' requirements/constraints.txt)

bench: install
	$(BIN)/python -m bench $(ARGS)

# The convergence test for longer (docs/development.md): random histories for MINUTES (default
# 30), or replay the one history of SEED (printed by a failure).
MINUTES ?= 30
soak: install
	$(BIN)/python -m tests.convergence --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) $(ARGS)

clean:
	rm -rf $(VENV) .meltano .pytest_cache .ruff_cache .hypothesis
