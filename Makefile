# voxarena: every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN_DIR ?= $(HOME)/.cache/voxarena/bin
PYTEST_ARGS ?=

.PHONY: run test venv system-deps livekit-server livekit-sip bench clean vendor-livekit-client

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

system-deps:
	.ci/install-system.sh

livekit-server:
	.ci/build-livekit.sh server

# The SIP bridge for the SIP tier (tests/e2e/sip_tier): from the module proxy, else from ../shared/livekit-sip.
# Needs the cgo headers from system-deps.
livekit-sip: system-deps
	.ci/build-livekit.sh sip

# Runs the product on its embedded defaults: the API on http://127.0.0.1:8080, SQLite in ./data, the embedded token
# issuer, and (with no VOXARENA_LIVEKIT_URL) a local LiveKit dev server on loopback.
run: venv
	@.ci/build-livekit.sh server || echo "run: could not build livekit-server; set VOXARENA_LIVEKIT_URL/_API_KEY/_API_SECRET to use your own LiveKit server"
	$(VENV)/bin/voxarena serve

# The whole test suite, inside a network namespace of its own (real livekit-server and livekit-sip built from source;
# the SIP tier also needs sipp and redis-server from system-deps, and fails when one is missing).
test: venv system-deps livekit-server livekit-sip
	.ci/netns-run $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

BENCH_ARGS ?=

bench: venv system-deps livekit-server
	.ci/netns-run $(VENV)/bin/python -m bench $(BENCH_ARGS)

# The dashboard's vendored LiveKit JS client, fetched again from the npm registry (VERSION=x.y.z for another one).
vendor-livekit-client:
	scripts/vendor-livekit-client.sh $(VERSION)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
