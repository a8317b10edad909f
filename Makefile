# parkwatch: `make bench` runs every benchmark and rewrites the results tables in README.md.
# `./dev` stays the entry point for setup, tests and the demo; this file only adds the
# benchmark run (GNU make, Debian package `make`).

SHELL := /bin/bash
PY := .venv/bin/python

# In this order: latency.py reads the half-load rate from the ingest.json just written.
BENCHES := bus rules alarms linkage gb26875 center center_board telemetry ingest latency peers startup

# Options per benchmark, chosen to keep `make bench` to about 15 minutes on 2 cores (the latest
# runs' times add up to 13 minutes, `./dev setup` aside; defaults noted
# are the scripts' own; override on the command line, e.g. `make bench RULES_ARGS=`).
BUS_ARGS ?=
# default: 1e3, 1e4, 1e5 and 1e6 sensors, about 3 min, nearly all of it the 1e6 case; the
# targets are at 1e5: without 1e6 it takes about 20 s
RULES_ARGS ?= --sizes 1000 10000 100000
ALARMS_ARGS ?=
# 100 press cycles (--presses), about 45 s
LINKAGE_ARGS ?=
# the command center's ingest on PostgreSQL and SQLite (benchmarks/center.py, about 70 s)
CENTER_ARGS ?=
# the command center's board in a headless Chromium: 100 events published → their rows
# (benchmarks/center_board.py, about 30 s; needs Debian's chromium and chromium-driver)
CENTER_BOARD_ARGS ?=
TELEMETRY_ARGS ?=
# usually about 1 min; the rate search stops starting steps after --budget s (default 165):
# this caps the worst case at about 2.5 min
INGEST_ARGS ?= --budget 120
LATENCY_ARGS ?=
# parkwatch against Node-RED and a bare paho relay (installs Node-RED 4.1.15 into
# ~/.cache/parkwatch-bench the first time, about 30 s; without Node.js and npm that column is
# skipped). `make bench-peers`: its defaults, about 7 min. `make bench` gives it about 3 min
# (PEERS_BENCH_ARGS: shorter steps and fixed-rate phases, so the search stops sooner).
PEERS_ARGS ?=
PEERS_BENCH_ARGS ?= --budget 150 --seconds 3 --latency-seconds 5
STARTUP_ARGS ?=
# the soak (benchmarks/soak.py, 30 min by default; --minutes 60 before a release): not part of
# `make bench`, run it with `make bench-soak`
SOAK_ARGS ?=

bus_ARGS = $(BUS_ARGS)
rules_ARGS = $(RULES_ARGS)
alarms_ARGS = $(ALARMS_ARGS)
linkage_ARGS = $(LINKAGE_ARGS)
gb26875_ARGS = $(GB26875_ARGS)
center_ARGS = $(CENTER_ARGS)
center_board_ARGS = $(CENTER_BOARD_ARGS)
telemetry_ARGS = $(TELEMETRY_ARGS)
ingest_ARGS = $(INGEST_ARGS)
latency_ARGS = $(LATENCY_ARGS)
peers_ARGS = $(if $(ALL_BENCHES),$(PEERS_BENCH_ARGS),$(PEERS_ARGS))
startup_ARGS = $(STARTUP_ARGS)
soak_ARGS = $(SOAK_ARGS)

BENCH_TARGETS := $(addprefix bench-,$(BENCHES))

.DEFAULT_GOAL := help
.PHONY: help bench setup report bench-soak $(BENCH_TARGETS)

help:
	@echo "make bench        ./dev setup, then every benchmark ($(BENCHES)), then the report:"
	@echo "                  benchmarks/results/*.json, benchmarks/results/summary.json and the"
	@echo "                  tables in README.md (about 15 minutes on 2 cores)"
	@echo "make bench-NAME   one benchmark alone (NAME: $(BENCHES)); no report"
	@echo "make bench-soak   the 30-minute soak (benchmarks/soak.py; SOAK_ARGS=\"--minutes 60\")"
	@echo "make report       rewrite summary.json and the README tables from the results present"
	@echo "options: BUS_ARGS RULES_ARGS ALARMS_ARGS TELEMETRY_ARGS INGEST_ARGS LATENCY_ARGS"
	@echo "         PEERS_ARGS (make bench-peers) PEERS_BENCH_ARGS (peers in make bench)"
	@echo "         LINKAGE_ARGS GB26875_ARGS CENTER_ARGS CENTER_BOARD_ARGS STARTUP_ARGS, e.g. make bench RULES_ARGS= (the rules defaults, about 3 min)"

setup:
	./dev setup

# One benchmark, timed; a failure is noted in the shell array `failed`, and the run goes on.
# (No recursive $(MAKE): `make -n bench` then only prints.)
define run_bench
echo; echo "== $(PY) benchmarks/$(1).py $($(1)_ARGS)"; t=$$(date +%s); \
$(PY) benchmarks/$(1).py $($(1)_ARGS) || failed+=($(1)); \
echo "== $(1): $$(( $$(date +%s) - t )) s";
endef

# Every benchmark runs even when one before it fails; the report then marks the results this
# run did not replace, and make fails at the end.
bench: ALL_BENCHES := 1
bench: setup
	@start=$$(date +%s); since=$$(date -u +%Y-%m-%dT%H:%M:%S+00:00); failed=(); \
	$(foreach b,$(BENCHES),$(call run_bench,$(b))) \
	echo; $(PY) benchmarks/report.py --since "$$since" || failed+=(report); \
	total=$$(( $$(date +%s) - start )); \
	echo; echo "make bench: $$(( total / 60 )) min $$(( total % 60 )) s in all"; \
	if [ $${#failed[@]} -gt 0 ]; then echo "make bench: failed: $${failed[*]}" >&2; exit 1; fi

$(BENCH_TARGETS): bench-%:
	@failed=(); $(call run_bench,$*) [ $${#failed[@]} -eq 0 ]

bench-soak:
	@failed=(); $(call run_bench,soak) [ $${#failed[@]} -eq 0 ]

report:
	$(PY) benchmarks/report.py
