# The two entry points of the README: `make demo` (set up, run the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo

.PHONY: setup demo test test-slow lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/delusive reproduce --preset demo --out $(OUT)

test: setup
	DELUSIVE_PROGRESS=0 $(PY) -m pytest -q -ra

test-slow: setup
	DELUSIVE_PROGRESS=0 $(PY) -m pytest -q -ra -m slow

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/train_step.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
