# caretrail: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test check lint bench kafka kafka-stop migrate demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

var/kafka/libs/.fetched: deploy/kafka/pom.xml | $(STAMP)
	$(BIN)/python -c "from caretrail.kafka_server import fetch_jars; fetch_jars()"
	touch $@

## up: set up and run the whole system (Kafka, every database migrated, web + workers)
## (CARETRAIL_DB=postgres make up: the same on a local PostgreSQL cluster under var/postgres)
up: $(STAMP) var/kafka/libs/.fetched
	$(BIN)/caretrail up

## test: set up and run every test (starts its own Kafka broker and PostgreSQL cluster)
test: $(STAMP) var/kafka/libs/.fetched
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: the benchmark suite on a fresh stack (BENCH_ARGS="--db postgres" for PostgreSQL)
bench: $(STAMP) var/kafka/libs/.fetched
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/caretrail bench $(BENCH_ARGS)

## check: what CI runs: lint, types, architecture, then every test
check: lint test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

kafka: $(STAMP) var/kafka/libs/.fetched
	$(BIN)/caretrail kafka start

kafka-stop: $(STAMP)
	$(BIN)/caretrail kafka stop

migrate: $(STAMP)
	$(BIN)/caretrail migrate

clean:
	-$(BIN)/caretrail kafka stop
	rm -rf var/db var/kafka/data
