# The front door: every routine task is a target. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv browser prometheus run test test-unit test-integration docs bench churn-eval soak lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create or update the virtualenv in .venv/

# The live-page test drives Debian's Chromium; installed when missing and we may (root).
browser: ## Install Debian's chromium + chromium-driver if missing (needs root)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null; \
	else echo "chromium/chromedriver missing and not root: the live-page test will be skipped"; fi

# The alert-rule tests and the scrape test run Debian's prometheus + promtool; installed when
# missing and we may (root). Recommends (node exporter, smartmontools) are left out, and a
# service the package may have started is stopped: the tests start their own on loopback.
prometheus: ## Install Debian's prometheus (prometheus + promtool) if missing (needs root)
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends prometheus >/dev/null \
		&& { ! command -v systemctl >/dev/null \
			|| systemctl disable --now prometheus >/dev/null 2>&1 || true; }; \
	else echo "prometheus/promtool missing and not root: the alert-rule and scrape tests will be skipped"; fi

run: $(STAMP) ## Run the whole pipeline on the embedded broker and Redis (Ctrl-C stops it)
	$(BIN)/pulse run

# Three processes, a test file each at a time: most of the wall time is waiting on the servers
# (group joins, restarts), and every process starts its own Tansu and redis-server.
# The docs site is built first, strictly: a broken link, anchor or nav entry fails the run.
test: $(STAMP) browser prometheus ## Run every test (unit, integration on real Tansu + redis-server, e2e, deploy, docs), the docs build and the layering check
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

test-unit: $(STAMP) ## Run the pure-core unit tests only
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP) ## Run the integration tests only
	$(BIN)/python -m pytest -q tests/integration

# NO_MKDOCS_2_WARNING: Material's end-of-life banner, printed on every build, is not about the docs.
docs: $(STAMP) ## Build the docs site (MkDocs, Material) into site/; fails on any warning
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP) ## Run the benchmark (not part of make test); results in bench/results/latest.json
	$(BIN)/python -m bench $(BENCH_ARGS)

# The out-of-sample protocol on the CDNOW sample that `lifetimes` ships: fit before the cut,
# judge after it. Files in .pulse/churn-eval/ (model, proposed policy, replay report).
CUT ?= 1997-10-01
churn-eval: $(STAMP) ## Fit the churn model on CDNOW_sample.txt before CUT and judge it after
	@mkdir -p .pulse/churn-eval
	$(BIN)/pulse fit "$$($(BIN)/python -c 'import lifetimes, pathlib; print(pathlib.Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt")')" \
		--delimiter whitespace --columns master_id,user_id,ts,cds,amount \
		--until $(CUT) --out .pulse/churn-eval/model.json
	$(BIN)/pulse replay "$$($(BIN)/python -c 'import lifetimes, pathlib; print(pathlib.Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt")')" \
		--delimiter whitespace --columns master_id,user_id,ts,cds,amount --quiet \
		--churn-model .pulse/churn-eval/model.json --judge-from $(CUT) --out .pulse/churn-eval/replay

# SOAK_ARGS: --minutes 10 --rate 500 --users 2000 (defaults); figures in .pulse/soak.json
soak: $(STAMP) ## Soak the embedded stack under steady load (10 min; not part of make test)
	$(BIN)/python -m tests.soak.run $(SOAK_ARGS)

lint: $(STAMP) ## Ruff, mypy and import-linter (the layering)
	$(BIN)/ruff check streams services tests bench
	$(BIN)/ruff format --check streams services tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP) ## Format and fix imports
	$(BIN)/ruff check --fix streams services tests bench
	$(BIN)/ruff format streams services tests bench

clean: ## Remove the virtualenv and local state
	rm -rf $(VENV) .pulse .pytest_cache .mypy_cache .ruff_cache
