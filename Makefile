# fastdimse: `make demo` runs the main job, `make test` builds and runs every test.
# Both do all set-up on a fresh machine: a .venv, the release build of the Rust
# extension, the Python test dependencies and the real DICOM peers (dcmtk).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
BENCH_ARGS ?=
# bench_migrate: instances migrated on loopback (in studies of 500); MIGRATE_MAX=1000000
# adds the peak RSS of `fastdimse migrate` at 10^6 (not run by default: every
# small file takes a 4 KiB page of /dev/shm, ~4 GB for the source and as much per destination).
MIGRATE_INSTANCES ?= 100000
MIGRATE_MAX ?=
# Largest batch of the sender-RSS benchmark (10^6 takes several minutes and ~2 GB of /dev/shm).
SENDER_RSS_MAX ?= 1000000

.PHONY: all venv build docs-deps docs peers postgres test cargo-test pytest demo bench soak clean

all: build

$(VENV)/.deps: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.5,<2" "pydicom>=3.0" "click>=8.1" "rich>=13" "pytest>=8" pytest-timeout hypothesis "pynetdicom>=2.1" pytest-benchmark "sqlalchemy>=2" "psycopg[binary]>=3.1" "psycopg-pool>=3.2" "mypy>=1.10" "matplotlib>=3.7" "trustme>=1.1"
	touch $@

venv: $(VENV)/.deps

# The docs extra of pyproject.toml (mkdocs, mkdocs-material, mkdocstrings), read from there.
$(VENV)/.docs-deps: pyproject.toml $(VENV)/.deps
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))' \
	  | xargs -d '\n' $(PIP) install -q
	touch $@

docs-deps: $(VENV)/.docs-deps

# The user guide and the API reference (from the docstrings, of the built extension
# too) into site/; --strict: a broken link or reference fails the build.
docs: build docs-deps
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# dcmtk from Debian when its tools are missing.
peers:
	@command -v storescp >/dev/null && command -v echoscu >/dev/null || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dcmtk )

# PostgreSQL from Debian when its server is missing (the tests start their own, in a
# temporary folder, as the unprivileged user the package creates).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql )

build: venv
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release -q

cargo-test:
	cargo test --release -p fastdimse

pytest: build peers postgres docs-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test: cargo-test pytest

demo: build peers
	$(PY) examples/demo.py

bench: build peers postgres
	$(PIP) install -q numpy "sqlalchemy>=2"
	@[ -x /usr/bin/time ] || ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq time )
	cargo build --release -q --example rawcopy
	$(PY) -m benches.run $(BENCH_ARGS)
	$(PY) benches/bench_codec.py
	$(PY) -m benches.bench_index --match-all --out benches/results.md $(BENCH_INDEX_ARGS)
	$(PY) -m benches.bench_ingest --postgres --out benches/results.md
	$(PY) -m benches.bench_sender_rss --max-size $(SENDER_RSS_MAX)
	$(PY) -m benches.bench_index_pg
	$(PY) -m benches.bench_tls --out benches/results.md
	$(PY) -m benches.bench_migrate --instances $(MIGRATE_INSTANCES) $(if $(MIGRATE_MAX),--max $(MIGRATE_MAX))

# 16 clients storing and querying for SOAK_DURATION seconds against one SCP process run
# under a 1,024-file limit; prints its open files, threads and RSS over time.
SOAK_DURATION ?= 600
soak: build peers
	$(PY) -m tests.support.soak --duration $(SOAK_DURATION) --clients 16 --nofile 1024

clean:
	rm -rf target $(VENV) python/fastdimse/*.so
