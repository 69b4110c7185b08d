# Two commands for a new user: `make demo` and `make test`. Both build .venv themselves, from uv.lock
# (exact versions, with hashes) and nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# How many test processes share the parallel part of `make test` (each has its own Redis,
# simulators and Celery worker); the tests marked `quiet` run after it, one at a time.
TEST_PROCESSES ?= 4

# uv uses the Python that made .venv and never downloads one.
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1
# Bytecode: uv compiles the dependencies as it installs them, and Python caches genq's own modules
# (__pycache__, ignored by git) even where the environment sets PYTHONDONTWRITEBYTECODE. Without
# either, every process (each Celery worker, each `genq` command a test runs) compiles celery, kombu,
# redis-py, pydantic and genq from source: 1.9 s of CPU to import the worker, against 0.6 s.
export UV_COMPILE_BYTECODE := 1
export PYTHONDONTWRITEBYTECODE :=

.PHONY: demo test check lint typecheck unit lock bench bench-inflight bench-faults bench-enqueue bench-overhead \
	bench-outputs fmt clean

# uv itself comes from .ci/uv.txt (its version's hashes, exported from the lock by `make lock`).
$(BIN)/uv: .ci/uv.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r .ci/uv.txt
	touch $@

# --locked: refuse a lock that no longer matches pyproject.toml instead of quietly resolving anew.
$(STAMP): pyproject.toml uv.lock $(BIN)/uv
	$(BIN)/uv sync --locked --quiet
	touch $@

demo: $(STAMP)
	$(BIN)/genq demo

# Lint, types and every test (unit and integration): what CI runs. mypy (one process, about 8 s) checks
# while the parallel part runs, its report printed after it; the quiet part runs once both passed.
test: lint
	@$(BIN)/mypy > $(VENV)/mypy.out 2>&1 & mypy=$$!; \
	echo "$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal -m \"not quiet\"  (and $(BIN)/mypy)"; \
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal -m "not quiet"; tests=$$?; \
	wait $$mypy; types=$$?; cat $(VENV)/mypy.out; test $$tests -eq 0 && test $$types -eq 0
	$(BIN)/pytest -p no:xdist -m quiet --durations=15

# Lint, types and the fast tests: the loop while editing (under a minute).
check: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	FUZZ_EXAMPLES=300 $(BIN)/pytest -n 2 tests/unit tests/simulators tests/test_lock.py tests/test_compose.py

# Re-resolve every dependency to the newest versions pyproject.toml allows, and export uv's own
# pin for the bootstrap. Review the diff of uv.lock, run `make test`, commit both files together.
lock: $(BIN)/uv
	$(BIN)/uv lock --upgrade
	$(BIN)/uv export --frozen --only-group tools --no-emit-project --no-header --format requirements-txt \
		--output-file .ci/uv.txt --quiet

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

# About two minutes: 200 lipsync jobs through genq and through a bare Celery chain making the same sync.so
# calls, four runs each; prints time, Redis commands and CPU per job and genq / bare (bench/out/overhead.md).
bench-overhead: $(STAMP)
	$(BIN)/python -m bench.overhead

# About a minute: a 2 GiB output streamed through one worker into a real S3 server; prints the worker's
# RSS growth while it streams.
bench-outputs: $(STAMP)
	$(BIN)/python bench/outputs.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache artifacts
