# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install pedigree, build the small model zoo, index it, answer a lineage question
#   make test   - create .venv, install pedigree with test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0's CPU wheel is on disk on the project's machines; elsewhere pip fetches it
# (add --index-url https://download.pytorch.org/whl/cpu for a CPU-only build).
TORCH ?= torch==2.13.0

.PHONY: install test demo bench-accuracy clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/pedigree demo

bench-accuracy: install
	$(BIN)/python -m bench.accuracy

clean:
	rm -rf $(VENV) pedigree-data .zoo-cache bench/.zoo
