# Everything builds from nothing: `make test` and `make demo` create .venv and install the package with [dev].
# [dev] holds no logger that acts in a stock `yolo train` (DVCLive, Comet, ClearML, MLflow): their tests get
# them from .loggers, a `pip install --target` folder that only those tests put on their path.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
LOGGERS := .loggers

export YOLO_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast test-83 demo bench lint figures clean

install: $(STAMP) $(LOGGERS)/.installed

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The [loggers] extra for tests/e2e/test_loggers.py only, outside .venv's path (tests/loggers_target.py).
$(LOGGERS)/.installed: $(STAMP) tests/loggers_target.py
	rm -rf $(LOGGERS)
	$(BIN)/python tests/loggers_target.py $(LOGGERS)
	touch $@

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

demo: $(STAMP)  # the demo needs no logger packages
	$(BIN)/yolo-batch demo

bench: install
	$(BIN)/python benchmarks/decision.py

figures: install
	$(BIN)/python benchmarks/figures.py

# mypy reads its settings from pyproject.toml ([tool.mypy]: the yolo_batch package).
lint: install
	$(BIN)/ruff check yolo_batch tests benchmarks notebooks
	$(BIN)/ruff format --check yolo_batch tests benchmarks notebooks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(LOGGERS) build *.egg-info runs .pytest_cache .u83
