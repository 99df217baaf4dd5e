# driftloop — every target installs what it needs first, so each works on a fresh machine.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install clickhouse zookeeper demo test test-cluster soak lint format stack-up stack-down stack-status clean

## install: the virtual environment at .venv/ with driftloop and its dev tools
install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and exactly pinned: the machine's local CPU wheel satisfies it (no CUDA download).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

## clickhouse: the Debian ClickHouse server package, when it is missing (sudo when not root)
clickhouse:
	@bash infra/install-clickhouse.sh

## zookeeper: Debian's ZooKeeper package, when it is missing (for the ClickHouse cluster tests)
zookeeper:
	@bash infra/install-zookeeper.sh

## demo: the closed loop on the embedded stack: drift injected, detected, retrained, recovered; a report
demo: install clickhouse
	$(BIN)/driftloop demo

## test: the whole suite (unit, doctests, integration against a private local stack), a file at a time on two
##       processes, each with a stack of its own (most integration tests wait on servers and workers, not the CPU)
test: install clickhouse
	$(BIN)/pytest -n 2 --dist loadfile

## test-cluster: the ClickHouse cluster tests (ZooKeeper, local servers as two replicas and as two shards; ~2 min)
test-cluster: install clickhouse zookeeper
	$(BIN)/pytest -m cluster tests/cluster

## soak: the long reliability runs (1,000,000 events with 10 worker kills, a 60 s ClickHouse outage,
##       50,000 hostile messages, a broker restart, a model over four partitions) and their table
soak: install clickhouse
	$(BIN)/python -m tests.reliability.soak

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

stack-up: install clickhouse
	$(BIN)/driftloop stack up

stack-down: install
	$(BIN)/driftloop stack down

stack-status: install
	$(BIN)/driftloop stack status

clean:
	-$(BIN)/driftloop stack down
	rm -rf $(VENV) .driftloop .pytest_cache .ruff_cache *.egg-info
