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

.PHONY: install test check quality typecheck demo vendor-swagger-ui serve bench-accuracy clean

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

# Swagger UI for /docs, vendored into package data from the npm registry (no CDN at run time)
SWAGGER_UI_VERSION ?= 5.35.0
vendor-swagger-ui:
	rm -rf build/swagger-ui && mkdir -p build/swagger-ui
	cd build/swagger-ui && npm pack -q swagger-ui-dist@$(SWAGGER_UI_VERSION) && tar xzf swagger-ui-dist-*.tgz
	cd build/swagger-ui/package && cp swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE \
		$(CURDIR)/pedigree/service/static/vendor/swagger-ui/
	echo "swagger-ui-dist $(SWAGGER_UI_VERSION) from the npm registry (make vendor-swagger-ui)" \
		> pedigree/service/static/vendor/swagger-ui/VERSION

bench-accuracy: install
	$(BIN)/python -m bench.accuracy

clean:
	rm -rf $(VENV) pedigree-data .zoo-cache bench/.zoo build .mypy_cache
