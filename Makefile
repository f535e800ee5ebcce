# MedChain: everything a fresh machine needs is installed by these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Flower's pins clash with MedChain's (requirements-fl.txt says which): a second venv.
FL_VENV  := .venv-fl
FL_STAMP := $(FL_VENV)/.installed
COMETBFT_VERSION := v0.38.26

.PHONY: setup demo test lint bench clean browser

setup: $(STAMP) $(FL_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "MedChain needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e '.[dev]'
	@echo "installing CometBFT $(COMETBFT_VERSION) with go install (about a minute)"
	GOBIN=$(abspath $(BIN)) GOFLAGS=-mod=mod go install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION)
	$(BIN)/python -m medchain.consensus.abci.protogen --cometbft $(COMETBFT_VERSION) \
		--out "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	touch $(STAMP)

$(FL_STAMP): requirements-fl.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "MedChain needs Python 3.11"'
	$(PYTHON) -m venv $(FL_VENV)
	$(FL_VENV)/bin/pip install --quiet --upgrade pip==25.3
	$(FL_VENV)/bin/pip install --quiet -r requirements-fl.txt
	$(FL_VENV)/bin/pip install --quiet --no-deps -e .
	touch $(FL_STAMP)

demo: setup
	$(BIN)/medchain demo --home .medchain-demo

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

browser:
	@command -v chromium >/dev/null || { echo "installing Debian's Chromium for the browser tests"; \
		(apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) \
		>/dev/null; }
	@# A CJK font, so the portal's zh-CN pages render (and screenshot) as text, not boxes.
	@# Not needed by any assertion: a failed install only warns.
	@fc-list :lang=zh 2>/dev/null | grep -q . || { echo "installing a Chinese font for the portal's pages"; \
		(apt-get install -y -q fonts-wqy-microhei || (apt-get update -q && \
		apt-get install -y -q fonts-wqy-microhei)) >/dev/null || \
		echo "warning: no Chinese font installed; zh-CN screenshots will show boxes"; }

# Two workers, a whole test file to each (module fixtures such as a localnet stay in
# one process; each localnet test file has loopback addresses of its own). Most tests
# wait on blocks and processes (two workers kept two cores busy 62% of the time); a
# third worker took ~2.5 minutes off but made a load-sensitive failover test fail once
# in three fresh clones, so it waits until that test is hardened. The 30 slowest tests
# are listed at the end: the suite must stay well under 20 minutes.
test: lint browser
	$(BIN)/pytest -n 2 --dist loadfile --durations=30

bench: setup
	$(BIN)/python bench/solo_throughput.py

clean:
	rm -rf $(VENV) $(FL_VENV) .medchain-demo .pytest_cache .mypy_cache .ruff_cache
