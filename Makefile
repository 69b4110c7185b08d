# Two commands for a new user: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-inflight bench-faults bench-enqueue fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genq demo

# Lint, types and every test (unit and integration): what CI runs.
test: lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/simulators

bench: $(STAMP)
	$(BIN)/python bench/ratelimit.py

# About 25 minutes: 100, 1,000 and 10,000 generations in flight, polling and with webhooks.
bench-inflight: $(STAMP)
	$(BIN)/python bench/inflight.py

# About a minute: jobs enqueued per second by Producer.submit and submit_many against Celery's send_task.
bench-enqueue: $(STAMP)
	$(BIN)/python bench/enqueue.py

# About two minutes: a fault storm over 200 jobs, a Redis SIGKILL with an AOF restart, a worker SIGKILL
# at each lipsync stage; prints lost jobs and duplicate generations (bench/out/faults.md).
bench-faults: $(STAMP)
	$(BIN)/python bench/faults.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache artifacts
