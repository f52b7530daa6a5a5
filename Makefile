# The two commands a new user runs: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov pins its own dependencies (boto3 among them): it lives in a venv of its own
CHECKOV_VENV := .venv-checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov
CHECKOV_PIN  := checkov==3.3.30
# `make conformance-peer`'s second opinion, MiniStack, in a venv of its own too (it pins its own botocore)
PEER_VENV      := .venv-peer
PEER_MINISTACK := $(PEER_VENV)/bin/ministack
PEER_PIN       := ministack==1.5.33
# root on CI and on the dev machines; sudo elsewhere
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-unit bench lint setup chromium clean conformance-peer

setup: $(STAMP)

$(CHECKOV):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q '$(CHECKOV_PIN)'

# pip byte-compiles what it installs one file at a time (45 s of a fresh setup here); compileall uses every
# core for the same files (25 s). Compiled up front, as pip would: PYTHONDONTWRITEBYTECODE may be set.
$(STAMP): pyproject.toml src/layer/requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" > /dev/null
	@touch $(STAMP)

# cryptography: MiniStack signs Cognito tokens with RSA only with it (else with a key no JWKS verifies);
# boto3: what AWS's Python runtime gives functions, and MiniStack runs functions with this venv's Python.
$(PEER_MINISTACK):
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q '$(PEER_PIN)' 'cryptography>=41' 'boto3>=1.34'

# Browser tests drive Debian's chromium; Playwright's own browser download cannot work here.
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

run: setup
	$(BIN)/busline local up --demo

# The unit folder runs on both cores (pytest-xdist); the rest one test at a time, since each local cloud
# wants the whole machine.
test: setup chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 tests/unit pipelines
	$(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/unit

# No local cloud, no Postgres, no browser: the fast suite CI runs on every push.
test-unit: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 tests/unit pipelines

bench: setup
	$(BIN)/python -m busline.bench --json bench-results.json

# checkov: every finding fixed, or skipped with its reason in the resource's Metadata; --skip-download
# keeps it off the network (no guideline lookups).
lint: setup $(CHECKOV)
	$(BIN)/ruff check busline pipelines src tests
	$(BIN)/mypy  # the files pyproject.toml lists: busline, the layer and every function
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region us-east-1
	$(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download
	$(BIN)/sam build --template template.yaml --build-dir .aws-sam/build
	$(BIN)/python -m busline.package_size .aws-sam/build  # Lambda's 250 MiB, code and layers unzipped

# Not part of `make test`: the conformance scenarios against the local cloud and MiniStack, side by side with
# what AWS documents (tests/conformance_peer); starts and stops both on loopback, writes conformance-peer.json.
conformance-peer: setup $(PEER_MINISTACK)
	$(BIN)/python -m tests.conformance_peer --ministack $(PEER_MINISTACK) --json conformance-peer.json

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(PEER_VENV) .busline .aws-sam
