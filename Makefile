# recbatch: `make demo` runs the whole pipeline on synthetic data; `make test` runs the test suite.
# Both create the virtualenv and install everything they need on a fresh machine.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= conf/demo.toml
PYTEST_ARGS ?=

.PHONY: help install check-java services native-blas jvm-cache demo test test-fast lint format bench bench-network bench-prepare bench-train bench-pipeline bench-export dist clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

check-java: ## Check that Java 17+ is installed (PySpark 4 needs it)
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2}' | cut -d. -f1); \
	if [ -z "$$v" ]; then \
	  echo "recbatch: Java not found. PySpark 4 needs Java 17 or newer:"; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; \
	  echo "  macOS:         brew install openjdk@17"; \
	  echo "  then check:    java -version"; exit 1; \
	elif [ "$$v" -lt 17 ]; then \
	  echo "recbatch: Java $$v found, but PySpark 4 needs Java 17 or newer (set JAVA_HOME to a JDK 17+)."; exit 1; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "recbatch needs Python 3.11+"' \
	  || { echo "recbatch: Python 3.11+ is needed (found $$($(PYTHON) --version 2>&1))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

install: check-java $(STAMP) ## Create .venv and install recbatch with dev tools

# The export tests start their own PostgreSQL and Redis on 127.0.0.1; these are Debian's packages.
# `demo` does not need them, so a machine without apt (or without root) can still run it.
SERVICE_PACKAGES := postgresql libpostgresql-jdbc-java redis-server

services: ## Install PostgreSQL, its JDBC driver and Redis for the export tests (Debian, as root; no-op when present)
	@missing=""; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	[ -f /usr/share/java/postgresql.jar ] || missing="$$missing libpostgresql-jdbc-java"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "recbatch: installing$$missing (Debian packages, for the export tests)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SERVICE_PACKAGES) >/dev/null; \
	else \
	  echo "recbatch: the export tests need$$missing; install them with:"; \
	  echo "  sudo apt-get install -y$$missing"; \
	  echo "  (without them those tests skip here and fail in CI)"; \
	fi

# Spark ALS (the evaluation baseline) calls BLAS through netlib: with Debian's OpenBLAS it runs
# natively and quietly; without it, ALS falls back to Java BLAS and logs one dlopen warning a run.
native-blas: ## Install OpenBLAS for Spark ALS where apt and root allow (no-op when libblas.so.3 exists)
	@if ldconfig -p 2>/dev/null | grep -q 'libblas.so.3'; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "recbatch: installing libopenblas0-pthread (native BLAS for Spark ALS)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopenblas0-pthread >/dev/null \
	  || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopenblas0-pthread >/dev/null; } \
	  || echo "recbatch: could not install OpenBLAS; Spark ALS uses Java BLAS (slower, one warning a run)"; \
	else \
	  echo "recbatch: no native BLAS (libblas.so.3): Spark ALS uses Java BLAS; sudo apt-get install libopenblas0-pthread"; \
	fi

demo: install native-blas ## Run the whole pipeline on embedded synthetic data
	$(BIN)/recbatch synth --config $(CONFIG)
	$(BIN)/recbatch run --config $(CONFIG)

# Two workers, each test module whole on one of them (its module fixtures run once): most of the
# suite waits on JVMs, subprocesses and servers, so two at a time fit on two cores. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

# Most tests start recbatch processes, each with its own JVM: they start from one class-data archive.
# The archive only makes start-ups faster: where it cannot be built (its error says why), runs
# and tests go on without it.
jvm-cache: install ## Build the JVM class archive embedded sessions start from (once per Java/Spark; ~1 min)
	@$(BIN)/recbatch jvm-cache || echo "recbatch: going on without the class archive (slower start-ups)"

test: install services native-blas jvm-cache ## Run the full test suite (TEST_WORKERS=2 processes, modules kept whole)
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope) $(PYTEST_ARGS)

test-fast: install ## Unit tests only: no Spark, no end-to-end runs, one worker per core (under a minute)
	$(BIN)/python -m pytest -m "not spark and not e2e" -n auto $(PYTEST_ARGS)

lint: install ## ruff lint and format check
	$(BIN)/ruff check recbatch jobs tests
	$(BIN)/ruff format --check recbatch jobs tests

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix recbatch jobs tests
	$(BIN)/ruff format recbatch jobs tests

dist: install ## Wheel, --py-files zip and packed executor env in dist/ (README: Running on a cluster)
	$(BIN)/python -m recbatch.ops.ship --out dist

BENCH_SIZE ?= quick
BENCH_RUNS ?= 3
# flock keeps benchmarks from overlapping where it exists (Linux); elsewhere they just run.
BENCH_LOCK := $(shell command -v flock >/dev/null 2>&1 && echo flock /tmp/recbatch-bench.lock)

bench: install ## Scoring benchmark vs Spark ALS (BENCH_SIZE=quick|full, BENCH_RUNS=3)
	$(BENCH_LOCK) $(BIN)/recbatch bench score --size $(BENCH_SIZE) --runs $(BENCH_RUNS)

bench-network: install ## NeuMF exact scoring vs the Keras model on every pair (BENCH_SIZE=quick|full)
	$(BENCH_LOCK) $(BIN)/recbatch bench network --size $(BENCH_SIZE) --runs $(BENCH_RUNS)

BENCH_EVENTS ?= 20000000

bench-prepare: install ## prepare at scale vs the same cleaning in DuckDB (BENCH_EVENTS=20000000)
	$(BENCH_LOCK) $(BIN)/recbatch bench prepare --events $(BENCH_EVENTS)

BENCH_TRAIN_EVENTS ?= 1000000,10000000

bench-train: install ## mf training vs Spark ALS fit on the same split (BENCH_TRAIN_EVENTS=1000000,10000000)
	$(BENCH_LOCK) $(BIN)/recbatch bench train --events $(BENCH_TRAIN_EVENTS)

BENCH_PIPELINE_EVENTS ?= 1000000,20000000

bench-pipeline: install ## recbatch run end to end, stage by stage (BENCH_PIPELINE_EVENTS=1000000,20000000)
	$(BENCH_LOCK) $(BIN)/recbatch bench pipeline --events $(BENCH_PIPELINE_EVENTS)

BENCH_EXPORT_USERS ?= 100000

bench-export: install services ## JDBC/Redis export vs driver-side COPY/INSERT (BENCH_EXPORT_USERS x K10 rows)
	$(BENCH_LOCK) $(BIN)/recbatch bench export --users $(BENCH_EXPORT_USERS) --runs $(BENCH_RUNS)

clean: ## Remove build outputs and demo artifacts (keeps .venv)
	rm -rf out data/demo build dist *.egg-info .pytest_cache .ruff_cache spark-warehouse metastore_db derby.log
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
