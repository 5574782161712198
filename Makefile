# Tagline — the commands. `make help` lists them.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV := $(shell deploy/local/ensure-uv)
INFRA := python3 deploy/local/infra.py

.PHONY: help sync lint test test-fast run infra-up infra-down infra-status bench chaos docs dlq send-request

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

sync:  ## install the workspace (uv, locked versions)
	$(UV) sync --locked

lint: sync  ## ruff format --check, ruff check, mypy --strict
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy

test: sync  ## THE test command: lint + every test against real Kafka and FerretDB (started and stopped here)
	deploy/local/run-tests

test-fast: sync  ## pytest only, against servers already started with `make infra-up`
	$(UV) run pytest

run: sync  ## run the stack in the foreground: Kafka, FerretDB and every service; Ctrl-C stops all
	$(UV) run python deploy/local/stack.py

infra-up:  ## start Kafka + FerretDB on loopback (idempotent); addresses in .local/infra/infra.env
	$(INFRA) up

infra-down:  ## stop them
	$(INFRA) down

infra-status:
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
