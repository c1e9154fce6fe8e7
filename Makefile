# Gatekeeper developer commands. `make demo` and `make test` bootstrap everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
VENV_STAMP := $(VENV)/.installed
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed
NODE_STAMP := node_modules/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint typecheck bench bootstrap clean mutation mutation-smoke

bootstrap: $(VENV_STAMP) $(NODE_STAMP) $(INFRA_STAMP) $(CHROMIUM)

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --disable-pip-version-check --upgrade pip
	@$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# checkov and pycep pin libraries of their own, so the infrastructure checks get a virtualenv of their own.
$(INFRA_STAMP): requirements-infra.txt
	@test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	@$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	@$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	@touch $@

# The approval page's browser tests and the demo's page screenshot drive Debian's Chromium through Playwright
# (`playwright install` is never used: it downloads a browser build of its own).
$(CHROMIUM):
	@$$(test "$$(id -u)" = 0 || echo sudo) apt-get update -qq
	@DEBIAN_FRONTEND=noninteractive $$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y -qq chromium

$(NODE_STAMP): package.json package-lock.json
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: $(VENV_STAMP) $(NODE_STAMP) $(CHROMIUM)
	@$(PY) -m demo --out demo-output

test: bootstrap lint typecheck
	@$(PY) -m pytest -n 2 --dist loadfile

lint: $(VENV_STAMP)
	@$(VENV)/bin/ruff check --quiet .
	@$(VENV)/bin/ruff format --check --quiet .

typecheck: $(VENV_STAMP)
	@$(VENV)/bin/mypy gatekeeper functions orchestrators demo devstack function_app.py

bench: bootstrap
	@$(PY) -m bench

# Mutation testing of the trust-critical modules (mutation/groups.toml), one group at a time:
# `make mutation MODULES=signatures,dispatcher` (JOBS=2 runs two scratch copies at once; RETEST=1 re-runs only
# the survivors of the last run, after adding tests for them).
mutation: $(VENV_STAMP)
	@$(PY) -m mutation.run $(if $(MODULES),--modules $(MODULES)) $(if $(JOBS),--jobs $(JOBS)) $(if $(FAIL_UNDER),--fail-under $(FAIL_UNDER)) $(if $(RETEST),--retest) $(if $(REPORT),--report)

# The CI smoke: the fixed list of mutants in mutation/smoke.toml must each be killed by their tests.
mutation-smoke: bootstrap
	@$(PY) -m mutation.smoke

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules demo-output .pytest_cache .mypy_cache .ruff_cache .mutation
