# Everything builds from nothing: `make test` and `make demo` create .venv and install the package with [dev].
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export YOLO_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast test-83 demo bench lint figures clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# One pytest-xdist worker per core (2 here and in CI); tests that share a resource run in one xdist_group.
WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q --durations=15 -n $(WORKERS) --dist loadgroup

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The suite against Ultralytics 8.3 (downloaded into .u83, ahead of the installed 8.4 on the path).
test-83: install
	$(BIN)/python -m pip install -q --no-deps --upgrade --target .u83 "ultralytics==8.3.240"
	PYTHONPATH=$(CURDIR)/.u83 $(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/yolo-batch demo

bench: install
	$(BIN)/python benchmarks/decision.py

figures: install
	$(BIN)/python benchmarks/figures.py

lint: install
	$(BIN)/ruff check yolo_batch tests benchmarks
	$(BIN)/ruff format --check yolo_batch tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache .u83
