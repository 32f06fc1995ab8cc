# Two entry points, both idempotent: `make demo` and `make check`.
# Everything lands in a local virtual environment (.venv) with the exact versions of
# constraints/dev.txt (torch 2.13.0 as a CPU build); the package itself keeps ranges.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Bytecode is written as each module is first imported (not for all of torch at install,
# most of which no check imports), so it must not be switched off for the checks.
PIP := $(PY) -m pip install --disable-pip-version-check -q --no-compile -c constraints/dev.txt
unexport PYTHONDONTWRITEBYTECODE
export MPLBACKEND := Agg

.PHONY: demo check test lint typecheck docs bench dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml constraints/dev.txt | $(PY)
	$(PIP) -e '.[plot]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints/dev.txt | $(PY)
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/gradbasics demo --out build/task2-activations.png

# Lint and types beside the docs (two cores), each target's output kept together; the
# docs come before the tests, whose checks of the built pages then read them.
check: $(VENV)/.dev-installed
	$(MAKE) -j2 --output-sync=target lint typecheck docs
	GRADBASICS_BUILT_DOCS=build/docs/html $(MAKE) test

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check src tests examples benchmarks docs tools
	$(PY) -m ruff format --check src tests examples benchmarks docs tools

typecheck: $(VENV)/.dev-installed
	$(PY) -m mypy --strict src tests

# One worker per core; a file's tests share a worker (their module fixtures build once).
test: $(VENV)/.dev-installed
	$(PY) -m pytest -n auto --dist loadfile

# Both languages: English at build/docs/html, 简体中文 at build/docs/html/zh_CN; the
# doctests run in both builds; a translated page with an untranslated or fuzzy message
# (against templates made from the current English sources) fails.
docs: $(VENV)/.dev-installed
	$(PY) -m sphinx -q -W --keep-going -n -b html docs build/docs/html
	$(PY) -m sphinx -q -W --keep-going -n -b html -D language=zh_CN docs build/docs/html/zh_CN
	$(PY) -m sphinx -q -W --keep-going -n -b doctest docs build/docs/doctest
	$(PY) -m sphinx -q -W --keep-going -n -b doctest -D language=zh_CN docs build/docs/doctest-zh_CN
	$(PY) -m sphinx -q -b gettext docs build/docs/gettext
	$(PY) tools/check_translations.py build/docs/gettext docs/locale/zh_CN/LC_MESSAGES

# The sdist and wheel, built offline with the dev environment's hatchling, then checked.
dist: $(VENV)/.dev-installed
	rm -rf dist
	$(PY) -m build --no-isolation --sdist --wheel --outdir dist .
	$(PY) -m twine check --strict dist/*

# Writes benchmarks/results.json and benchmarks/realsize.json (each with the date, machine
# and versions), then the performance page's tables from them (benchmarks/results.rst and
# benchmarks/realsize.rst, checked by tests/test_benchmarks.py); a missed target fails
# the target, after every file is written.
bench: $(VENV)/.dev-installed
	$(PY) benchmarks/run.py; a=$$?; $(PY) benchmarks/realsize.py; b=$$?; \
	$(PY) benchmarks/report.py && test $$a -eq 0 && test $$b -eq 0

clean:
	rm -rf $(VENV) build dist docs/_build .mypy_cache .pytest_cache .ruff_cache
