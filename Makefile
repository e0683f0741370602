# ctcm: see README.md. Every target sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CTCM   := $(VENV)/bin/ctcm
STAMP  := $(VENV)/.installed

.PHONY: all setup test vectors docs bench soak clean p4-sources p4

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

# P4 includes generated from model/ctcm/spec.py and the field tables (p4/include/generated/).
p4-sources: $(STAMP)
	$(PY) -m ctcm.p4gen --out p4/include/generated

# The P4 program for bmv2, per table geometry the vectors use: build/p4/<geometry>/ctcm.json.
# Any p4c warning fails the build; without p4c it says so in one line.
p4: $(STAMP)
	$(PY) -m ctcm.p4gen --all

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/bench.py --out BENCHMARKS.md

soak: $(STAMP)
	$(PY) bench/soak.py --out SOAK.md

clean:
	rm -rf $(VENV) build *.egg-info model/*.egg-info .pytest_cache
