# ctcm: see README.md. Every target sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CTCM   := $(VENV)/bin/ctcm
STAMP  := $(VENV)/.installed

.PHONY: all setup test vectors docs bench soak clean

all: vectors

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,fast]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: regenerate the committed golden vectors (byte-identical).
vectors: $(STAMP)
	$(CTCM) vectors --quiet --out vectors vectors/scenarios/*.yaml
	@echo "vectors/ regenerated from vectors/scenarios/ ($$(ls vectors/scenarios/*.yaml | wc -l) scenarios)"

# State diagram and transition table, generated from ctcm.tracker.TRANSITIONS.
docs: $(STAMP)
	$(CTCM) docs --out docs

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/bench.py --out BENCHMARKS.md

soak: $(STAMP)
	$(PY) bench/soak.py --out SOAK.md

clean:
	rm -rf $(VENV) build *.egg-info model/*.egg-info .pytest_cache
