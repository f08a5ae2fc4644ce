# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install pedigree, build the small model zoo, index it, answer a lineage question
#   make test   - create .venv, install pedigree with test extras, run the quality gates and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0's CPU wheel is on disk on the project's machines; elsewhere pip fetches it
# (add --index-url https://download.pytorch.org/whl/cpu for a CPU-only build).
TORCH ?= torch==2.13.0
# mypy reads the installed layout (pedigree.crawler, ... mapped from the top-level folders by
# pyproject.toml's package-dir) from this tree of links, rebuilt by every `make check`.
TYPECHECK := build/typecheck

.PHONY: install test check quality typecheck demo serve bench-accuracy clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# ruff (lint + format), mypy, and the layer contract (tests/test_layers.py)
check: quality typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py

quality: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/pedigree
	for f in pedigree/*; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/pedigree/; done
	for d in crawler indexer storage query; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/pedigree/$$d; done
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy -p pedigree

# two pytest workers (pytest-xdist): the zoo is built once (a file lock), each worker shares it
test: install check
	$(BIN)/python -m pytest -n 2

demo: install
	$(BIN)/pedigree demo

# the HTTP API (docs at /docs) and the web page over the demo's data folder, on 127.0.0.1:8000
serve: install
	$(BIN)/pedigree serve --home pedigree-data

bench-accuracy: install
	$(BIN)/python -m bench.accuracy

clean:
	rm -rf $(VENV) pedigree-data .zoo-cache bench/.zoo build .mypy_cache
