# Tagline — the commands. `make help` lists them.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV := $(shell deploy/local/ensure-uv)
INFRA := python3 deploy/local/infra.py

.PHONY: help sync lint test test-fast test-infra-reset run infra-up infra-down infra-reset infra-status bench chaos docs dlq send-request

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

sync:  ## install the workspace (uv, locked versions)
	$(UV) sync --locked

lint: sync  ## ruff format --check, ruff check, mypy --strict
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy

test: sync  ## THE test command: lint + every test against a Kafka, PostgreSQL and FerretDB of its own (.local/test-infra, wiped after)
	deploy/local/run-tests

test-fast: sync  ## pytest only, against the test servers (.local/test-infra), started if needed and left running
	deploy/local/with-infra --keep $(UV) run pytest

test-infra-reset:  ## stop the test servers and delete their data
	$(INFRA) reset --state-dir .local/test-infra

run: sync  ## run the stack in the foreground (Kafka, PostgreSQL, FerretDB, every service); Ctrl-C stops all, data is kept
	$(UV) run python deploy/local/stack.py

infra-up:  ## start the servers of `make run`: Kafka, PostgreSQL, FerretDB (idempotent; data kept in .local/infra); addresses in .local/infra/infra.env
	$(INFRA) up

infra-down:  ## stop them; their data is kept
	$(INFRA) down

infra-reset:  ## stop them and delete their data (topics, PostgreSQL's cluster: members, sends, sessions…)
	$(INFRA) reset

infra-status:  ## exit 0 when all three answer
	$(INFRA) status

bench: sync  ## benchmarks (not part of `make test`); prints figures
	deploy/local/run-bench

chaos: sync  ## the fault drill (not part of `make test`): own servers, load, kill -9 / outages / LINE faults, a table
	deploy/local/run-chaos

docs: sync  ## regenerate docs/api (AsyncAPI of every topic, OpenAPI of every HTTP API) from the code
	$(UV) run python deploy/local/gen_docs.py

dlq: sync  ## dead letters: make dlq ARGS="list" | ARGS="inspect send.requests.v1 0:42" | ARGS="replay send.requests.v1 --all --dry-run"
	set -a; [ -f .local/infra/infra.env ] && . .local/infra/infra.env; set +a; $(UV) run python -m tagline_platform.dlq $(ARGS)

CHANNEL ?= 1234567890
send-request: sync  ## publish one send request: make send-request FILE=request.json [CHANNEL=1234567890] (FILE=- reads stdin)
	@[ -n "$(FILE)" ] || { echo 'usage: make send-request FILE=<SendMessages JSON file, or - for stdin> [CHANNEL=<channel id>]' >&2; exit 2; }
	set -a; [ -f .local/infra/infra.env ] && . .local/infra/infra.env; set +a; $(UV) run python -m tagline_sender.request --channel "$(CHANNEL)" "$(FILE)"
