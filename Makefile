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

.PHONY: install test test-fast compat demo bench lint figures clean

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

# Every Ultralytics release the plugin claims, proven: tests/compat/releases.txt names them (the oldest claimed, one
# in the middle, the newest the index serves, the newest below the range). Each is installed in .compat/VERSION
# (tests/compat/target.py: the release and what it needs that .venv lacks), ahead of .venv's own on the path.
COMPAT := $(shell sed -e 's/\#.*//' tests/compat/releases.txt | awk 'NF {print $$1}')

compat: $(STAMP)  # the compat tests need no logger packages
	@set -e; for v in $(COMPAT); do \
	  $(BIN)/python tests/compat/target.py $$v .compat/$$v; \
	  echo "== Ultralytics $$v"; \
	  YOLO_BATCH_COMPAT=$$v PYTHONPATH=$(CURDIR)/.compat/$$v:$(CURDIR) $(BIN)/python -m pytest -q -p no:cacheprovider tests/compat; \
	done

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
	rm -rf $(VENV) $(LOGGERS) build *.egg-info runs .pytest_cache .compat
