# Every target sets up what it needs itself: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
# A venv per Python version (.venv-3.11, .venv-3.13, ...): `make test PYTHON=...` never reuses
# another Python's.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV   := .venv-$(or $(PYTHON_VERSION),unknown)
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint schema docs bench clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "my_cache needs Python 3.11 or newer; set PYTHON=" or 0)'
	$(PYTHON) -m venv $(VENV)

# demo installs the package as users do (a wheel, not the work tree); test installs it
# editable with the dev extra. Each stamp says which install the venv holds now.
$(VENV)/.user-install: pyproject.toml $(wildcard my_cache/*.py my_cache/*/*.py) | $(PY)
	$(PIP) install .
	rm -f $(VENV)/.dev-install && touch $@

$(VENV)/.dev-install: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev]'
	rm -f $(VENV)/.user-install && touch $@

demo: $(VENV)/.user-install
	$(PY) examples/simple_use_cache.py

test: $(VENV)/.dev-install
	$(PY) -m ruff check my_cache tests examples benchmarks
	$(PY) -m mypy my_cache
	$(PY) -m pytest

lint: $(VENV)/.dev-install
	$(PY) -m ruff check my_cache tests examples benchmarks
	$(PY) -m mypy my_cache

# Rewrite config/mycache.schema.json from the settings model (a test fails when it is stale).
schema: $(VENV)/.dev-install
	$(PY) -c 'import json; from my_cache.settings import settings_json_schema as s; print(json.dumps(s(), indent=2))' > config/mycache.schema.json

# Rewrite the generated blocks of README.md and docs/*.md from real runs (a test fails when
# they are stale: tests/test_docs.py).
docs: $(VENV)/.dev-install
	$(PY) docs/generate.py

# What `make demo` and the examples write (cache/, and examples/cache/ when run from
# examples/), the venvs and the tools' caches.
clean:
	rm -rf .venv .venv-* cache examples/cache .pytest_cache .mypy_cache .ruff_cache

# Speed beside the peers; not part of `make test` (timings belong here, not in unit tests).
bench: $(VENV)/.dev-install
	$(PIP) install -e '.[dev,bench]'
	$(PY) benchmarks/compare.py > docs/bench-results.txt.new
	mv docs/bench-results.txt.new docs/bench-results.txt && cat docs/bench-results.txt
	$(PY) benchmarks/large_values.py > docs/large-values-results.txt.new
	mv docs/large-values-results.txt.new docs/large-values-results.txt && cat docs/large-values-results.txt
	$(PY) benchmarks/redis_ops.py
